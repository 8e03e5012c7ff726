// What the upload page's tests share: the app rendered and ready, and a pause for the
// page's own reading of each chosen file.
import { act, render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import App from '../App.jsx';

/** The app on the upload page, once its steps are loaded; returns a user to drive it. */
export async function renderReady() {
  const user = userEvent.setup({ applyAccept: false });
  render(<App />);
  await screen.findByRole('radio', { name: 'Build my own steps' });
  return user;
}

/** The page reads each file's first bytes before listing it: let that finish. */
export async function settle() {
  await act(() => new Promise((resolve) => setTimeout(resolve, 30)));
}

// "Do this from a script" on the upload page: the commands follow the chosen steps, and copy.
import { screen, waitFor } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { jsonResponse, mockFetch, operationsFixture } from '../../test/fakes.js';
import { renderReady } from '../../test/uploadPage.jsx';

beforeEach(() => {
  window.localStorage.clear();
  window.sessionStorage.clear();
  window.history.replaceState(null, '', '/');
  mockFetch((url) => {
    if (url === '/api/v1/operations') return jsonResponse(200, operationsFixture);
    if (url === '/api/v1/presets') return jsonResponse(200, { presets: [] });
    return jsonResponse(404, {});
  });
});

const server = () => window.location.origin;

describe('Do this from a script', () => {
  it('shows the CLI command and the curl request for the chosen preset, then for the steps as they change', async () => {
    const user = await renderReady();
    await user.click(screen.getByText('Do this from a script'));
    const cli = screen.getByTestId('script-cli');
    const curl = screen.getByTestId('script-curl');
    expect(cli).toHaveTextContent(`imageflow --server ${server()} submit photos/ --preset web`);
    expect(curl.textContent).toContain(`curl -s ${server()}/api/v1/jobs`);
    expect(curl.textContent).toContain('-F preset=web');

    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'grayscale');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    expect(cli.textContent).toBe(`imageflow --server ${server()} submit photos/ --operations '[{"op":"grayscale"}]'`);
    expect(curl.textContent).toContain(`-F 'operations=[{"op":"grayscale"}]'`);

    await user.selectOptions(screen.getByLabelText('Add a step'), 'rotate');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    expect(cli.textContent).toMatch(/--operations '\[\{"op":"grayscale"\},\{"op":"rotate"[^']*\}\]'$/);

    await user.type(screen.getByLabelText(/Email/), 'me@example.com');
    expect(cli.textContent).toMatch(/ --email me@example\.com$/);
    expect(curl.textContent).toContain('-F email=me@example.com');
  });

  it('copies a command with its button', async () => {
    const writeText = vi.fn(async () => {});
    const user = await renderReady();
    // user-event installs its own clipboard: ours goes on top of it
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    await user.click(screen.getByText('Do this from a script'));
    const [copyCli] = screen.getAllByRole('button', { name: /^Copy/ });
    await user.click(copyCli);
    await waitFor(() => expect(writeText).toHaveBeenCalledWith(`imageflow --server ${server()} submit photos/ --preset web`));
    expect(await screen.findByText('Copied.')).toBeInTheDocument();
  });
});

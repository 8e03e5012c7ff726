import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { expect, it } from 'vitest';
import App from '../App.jsx';
import { jsonResponse, mockFetch } from '../test/fakes.js';

const job = (n, fields = {}) => ({ job_id: String(n).repeat(32).slice(0, 32), name: `batch ${n}`, status: 'completed',
  total: 2, succeeded: 2, failed: 0, skipped: 0, created_at: '2026-11-30T10:00:00.000Z', bytes_in: 2000,
  bytes_out: 500, ...fields });

it('lists the caller\'s jobs page by page and filters them by status', async () => {
  const fetch = mockFetch((url) => {
    if (url.includes('cursor=NEXT')) return jsonResponse(200, { jobs: [job(3)], next_cursor: null, links: {} });
    if (url.includes('status=cancelled')) {
      return jsonResponse(200, { jobs: [job(4, { status: 'cancelled', skipped: 1 })], next_cursor: null, links: {} });
    }
    return jsonResponse(200, { jobs: [job(1), job(2, { failed: 1, status: 'completed_with_errors' })],
                               next_cursor: 'NEXT', links: {} });
  });
  window.history.replaceState(null, '', '/');
  render(<App />);
  await userEvent.click(screen.getByRole('link', { name: 'Your jobs' }));
  expect(await screen.findByRole('link', { name: 'batch 1' })).toHaveAttribute('href', `/jobs/${'1'.repeat(32)}`);
  expect(screen.getByText(/1 failed/)).toBeInTheDocument();
  expect(screen.getAllByText(/Saved 1.5 KB \(75%\)/)).toHaveLength(2);
  await userEvent.click(screen.getByRole('button', { name: 'Show older jobs' }));
  expect(await screen.findByRole('link', { name: 'batch 3' })).toBeInTheDocument();
  expect(screen.getByRole('link', { name: 'batch 1' })).toBeInTheDocument();
  expect(screen.queryByRole('button', { name: 'Show older jobs' })).toBeNull();
  await userEvent.selectOptions(screen.getByLabelText('Show'), 'cancelled');
  expect(await screen.findByRole('link', { name: 'batch 4' })).toBeInTheDocument();
  expect(screen.queryByRole('link', { name: 'batch 1' })).toBeNull();
  expect(fetch.mock.calls.map(([url]) => url)).toContain('/api/v1/jobs?limit=20&status=cancelled');
});

it('says why the list could not be read', async () => {
  mockFetch(() => jsonResponse(503, { error: { code: 'unavailable', message: 'the job store is not answering' } }));
  window.history.replaceState(null, '', '/jobs');
  render(<App />);
  expect(await screen.findByRole('alert')).toHaveTextContent('the job store is not answering');
  expect(screen.queryByLabelText('Your API key')).toBeNull();
});

it('asks for the API key in place when the server wants one, then lists the jobs read with it', async () => {
  window.sessionStorage.clear();
  const fetch = mockFetch((url, init) => {
    if ((init?.headers || {}).Authorization !== 'Bearer studio-key-0123456789') {
      return jsonResponse(401, { error: { code: 'api_key_required', message: 'an API key is required' } });
    }
    return jsonResponse(200, { jobs: [job(1)], next_cursor: null, links: {} });
  });
  window.history.replaceState(null, '', '/jobs');
  render(<App />);
  const field = await screen.findByLabelText('Your API key');
  expect(field).toHaveFocus();
  await userEvent.type(field, 'studio-key-0123456789');
  await userEvent.click(screen.getByRole('button', { name: 'Use this key' }));
  expect(await screen.findByRole('link', { name: 'batch 1' })).toBeInTheDocument();
  expect(screen.queryByLabelText('Your API key')).toBeNull();
  expect(fetch.mock.calls.at(-1)[1].headers.Authorization).toBe('Bearer studio-key-0123456789');
  window.sessionStorage.clear();
});

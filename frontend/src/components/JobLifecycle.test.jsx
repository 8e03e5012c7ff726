import { fireEvent, render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import JobLifecycle from './JobLifecycle.jsx';
import { savingsText } from '../lib/format.js';
import { jsonResponse, mockFetch } from '../test/fakes.js';

const JOB_ID = 'd'.repeat(32);
const NEW_ID = 'e'.repeat(32);

function job(fields) {
  return { job_id: JOB_ID, status: 'completed', total: 3, succeeded: 3, failed: 0, skipped: 0,
           operations: [{ op: 'grayscale' }], bytes_in: 0, bytes_out: 0, child_job_ids: [], ...fields };
}

describe('JobLifecycle', () => {
  it('cancels a running job and hands back the server answer', async () => {
    const fetch = mockFetch(() => jsonResponse(202, job({ status: 'processing', cancel_requested_at: 'now' })));
    const onChanged = vi.fn();
    render(<JobLifecycle job={job({ status: 'processing', succeeded: 1 })} onChanged={onChanged} />);
    expect(screen.queryByRole('button', { name: /retry/i })).toBeNull();
    await userEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(fetch.mock.calls[0][0]).toBe(`/api/v1/jobs/${JOB_ID}/cancel`);
    expect(fetch.mock.calls[0][1].method).toBe('POST');
    expect(onChanged).toHaveBeenCalledWith(expect.objectContaining({ cancel_requested_at: 'now' }));
  });

  it('says a cancel is under way instead of offering it twice', () => {
    render(<JobLifecycle job={job({ status: 'processing', cancel_requested_at: 'now' })} />);
    expect(screen.queryByRole('button', { name: 'Cancel' })).toBeNull();
    expect(screen.getByRole('status')).toHaveTextContent('photos not started will be skipped');
  });

  it('retries the failed and skipped photos of a finished job', async () => {
    const fetch = mockFetch(() => jsonResponse(202, job({ status: 'queued', run: 1 })));
    render(<JobLifecycle job={job({ status: 'cancelled', succeeded: 1, failed: 1, skipped: 1 })} />);
    expect(screen.getByText(/1 photo was skipped/)).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Retry failed (2)' }));
    expect(fetch.mock.calls[0][0]).toBe(`/api/v1/jobs/${JOB_ID}/retry`);
  });

  it('runs the job again with other steps and opens the new job', async () => {
    const fetch = mockFetch(() => jsonResponse(202, { job_id: NEW_ID, parent_job_id: JOB_ID }));
    render(<JobLifecycle job={job({ failed: 1, succeeded: 2 })} />);
    await userEvent.click(screen.getByRole('button', { name: 'Run again with other steps' }));
    const steps = screen.getByLabelText('Steps (JSON, as in the API)');
    await userEvent.clear(steps);
    await userEvent.click(steps);
    await userEvent.paste('[{"op": "resize", "width": 300}]');
    await userEvent.selectOptions(screen.getByLabelText('Which photos'), 'failed');
    await userEvent.click(screen.getByRole('button', { name: 'Run again (no upload)' }));
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe(`/api/v1/jobs/${JOB_ID}/rerun`);
    expect(JSON.parse(init.body)).toEqual({ operations: [{ op: 'resize', width: 300 }], only: 'failed' });
    expect(window.location.pathname).toBe(`/jobs/${NEW_ID}`);
  });

  it("shows the server's reason when an action is refused", async () => {
    mockFetch(() => jsonResponse(409, { error: { code: 'nothing_to_retry', message: 'job has no failed images to retry' } }));
    render(<JobLifecycle job={job({ failed: 1, succeeded: 2 })} />);
    await userEvent.click(screen.getByRole('button', { name: 'Retry failed (1)' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('job has no failed images to retry');
  });

  it('shows the savings and the links between a job and its re-runs', () => {
    render(<JobLifecycle job={job({ bytes_in: 923_000_000, bytes_out: 111_000_000, parent_job_id: NEW_ID,
                                    child_job_ids: [NEW_ID] })} />);
    expect(screen.getByTestId('savings')).toHaveTextContent('Saved 774 MB (88%)');
    expect(screen.getByRole('link', { name: 'an earlier job' })).toHaveAttribute('href', `/jobs/${NEW_ID}`);
    expect(screen.getByRole('link', { name: 'job eeeeeeee' })).toBeInTheDocument();
  });
});

describe('savingsText', () => {
  it('says when the results are larger, and nothing without sizes', () => {
    expect(savingsText({ bytes_in: 1000, bytes_out: 1500 })).toBe('The results are 500 B larger than the originals (50%)');
    expect(savingsText({})).toBe('');
  });
});

describe('the job page', () => {
  it('says an expired job has expired, with the server message', async () => {
    const { default: App } = await import('../App.jsx');
    mockFetch(() => jsonResponse(410, { error: { code: 'job_expired',
      message: `job ${JOB_ID} has expired: jobs and their files are kept 30 days after they are created` } }));
    window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    expect(await screen.findByRole('heading', { level: 1 })).toHaveTextContent('This job has expired');
    expect(screen.getByRole('alert')).toHaveTextContent('kept 30 days');
  });

  it('offers Cancel on a running job and follows it to the end', async () => {
    const { default: App } = await import('../App.jsx');
    let cancelled = false;
    mockFetch((url) => {
      if (url.endsWith('/cancel')) {
        cancelled = true;
        return jsonResponse(202, job({ status: 'processing', cancel_requested_at: 'now' }));
      }
      return jsonResponse(200, cancelled ? job({ status: 'cancelled', succeeded: 1, skipped: 2, images: [] })
        : job({ status: 'processing', succeeded: 1, images: [] }));
    });
    window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    await userEvent.click(await screen.findByRole('button', { name: 'Cancel' }));
    expect(await screen.findByRole('heading', { level: 1, name: 'This job was cancelled' })).toBeInTheDocument();
    expect(screen.getByText(/2 photos were skipped/)).toBeInTheDocument();
  });

  it('shows a skipped photo as skipped, not as still working', async () => {
    const { default: App } = await import('../App.jsx');
    mockFetch(() => jsonResponse(200, job({ status: 'cancelled', succeeded: 0, skipped: 1, images: [
      { image_id: 'f'.repeat(32), filename: 'late.jpg', status: 'skipped', error: 'skipped: cancelled',
        input_url: '/x', output_url: null, outputs: [] }] })));
    window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    // on the contact sheet: marked skipped, no spinner; opened, the lightbox says why
    const tile = await screen.findByRole('button', { name: 'late.jpg: Skipped' });
    expect(document.querySelector('.picture-waiting')).toBeNull();
    fireEvent.click(tile);
    expect(await screen.findByText('Skipped: the job was cancelled')).toBeInTheDocument();
    expect(screen.queryByText('Working on it…')).toBeNull();
  });
});

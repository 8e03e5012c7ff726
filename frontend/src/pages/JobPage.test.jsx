import { act, fireEvent, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import App from '../App.jsx';
import { jsonResponse, makeJob, mockFetch, networkFailure } from '../test/fakes.js';

const JOB_ID = 'c'.repeat(32);

function openJobPage(answers) {
  // `answers` is the server's successive answers to GET /api/v1/jobs/<id>; the last repeats.
  let calls = 0;
  const fetch = mockFetch((url) => {
    expect(url).toBe(`/api/v1/jobs/${JOB_ID}`);
    const answer = answers[Math.min(calls, answers.length - 1)];
    calls += 1;
    return typeof answer === 'function' ? answer() : answer;
  });
  window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
  render(<App />);
  return fetch;
}

async function nextPoll(ms = 1100) {
  await act(() => vi.advanceTimersByTimeAsync(ms));
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'], shouldAdvanceTime: true });
});

afterEach(() => {
  vi.useRealTimers();
});

const running = makeJob({
  jobId: JOB_ID,
  status: 'processing',
  images: [
    { filename: 'beach.jpg', status: 'succeeded' },
    { filename: 'broken.jpg', status: 'failed', error: 'the file is truncated: the image data ends early' },
    { filename: 'dog.png', status: 'queued' },
  ],
});
const finished = makeJob({
  jobId: JOB_ID,
  status: 'completed_with_errors',
  images: [
    { filename: 'beach.jpg', status: 'succeeded' },
    { filename: 'broken.jpg', status: 'failed', error: 'the file is truncated: the image data ends early' },
    { filename: 'dog.png', status: 'succeeded' },
  ],
});

describe('job page', () => {
  it('opened cold on a running job, shows live progress and follows it to the end', async () => {
    const fetch = openJobPage([jsonResponse(200, running), jsonResponse(200, finished)]);
    expect(await screen.findByRole('heading', { level: 1, name: 'Processing your photos' })).toBeInTheDocument();
    expect(screen.getByLabelText('Progress')).toHaveAttribute('value', '2');
    expect(screen.getByLabelText('Progress')).toHaveAttribute('max', '3');
    expect(screen.getByText('2 of 3 photos done')).toBeInTheDocument();
    expect(screen.getByTestId('count-succeeded')).toHaveTextContent('1');
    expect(screen.getByTestId('count-failed')).toHaveTextContent('1');
    expect(screen.getByTestId('count-pending')).toHaveTextContent('1');
    const dog = screen.getByRole('heading', { name: 'dog.png' }).closest('li');
    expect(within(dog).getByText('Waiting')).toBeInTheDocument();
    expect(within(dog).getByText('Working on it…')).toBeInTheDocument();

    await nextPoll();
    expect(await screen.findByRole('heading', { level: 1, name: 'Your photos are ready, with some errors' })).toBeInTheDocument();
    expect(screen.getByText('3 of 3 photos done')).toBeInTheDocument();
    const calls = fetch.mock.calls.length;
    await nextPoll(5000);
    expect(fetch.mock.calls.length).toBe(calls); // a finished job is not polled again
  });

  it('shows before and after pictures and downloads for each result, and the zip', async () => {
    openJobPage([jsonResponse(200, finished)]);
    const beach = (await screen.findByRole('heading', { name: 'beach.jpg' })).closest('li');
    const [id] = [finished.images[0].image_id];
    expect(within(beach).getByAltText('beach.jpg, before')).toHaveAttribute('src', `/api/v1/jobs/${JOB_ID}/images/${id}/input`);
    expect(within(beach).getByAltText('beach.jpg, after')).toHaveAttribute('src', `/api/v1/jobs/${JOB_ID}/images/${id}/output`);
    expect(within(beach).getByText(/After · 800×600 · 50.8 KB · JPEG/)).toBeInTheDocument();
    const download = within(beach).getByRole('link', { name: 'Download beach.jpg' });
    expect(download).toHaveAttribute('href', `/api/v1/jobs/${JOB_ID}/images/${id}/output`);
    expect(download).toHaveAttribute('download', 'beach.jpg');
    const zip = screen.getByRole('link', { name: 'Download all (zip)' });
    expect(zip).toHaveAttribute('href', `/api/v1/jobs/${JOB_ID}/archive.zip`);
  });

  it('explains a failed image in plain words, keeping the server detail', async () => {
    openJobPage([jsonResponse(200, finished)]);
    const broken = (await screen.findByRole('heading', { name: 'broken.jpg' })).closest('li');
    expect(within(broken).getByText('Failed')).toBeInTheDocument();
    expect(within(broken).getByText('This image file is damaged or incomplete, so it could not be read.')).toBeInTheDocument();
    expect(within(broken).getByText('Details: the file is truncated: the image data ends early')).toBeInTheDocument();
    expect(within(broken).queryByRole('link', { name: /Download/ })).not.toBeInTheDocument();
  });

  it('says clearly when the job id is unknown', async () => {
    openJobPage([jsonResponse(404, { error: { code: 'job_not_found', message: "no job with id 'ccc'" } })]);
    expect(await screen.findByRole('heading', { level: 1, name: "We couldn't find this job" })).toBeInTheDocument();
    expect(screen.getByText(JOB_ID)).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Start a new batch' })).toHaveAttribute('href', '/');
  });

  it('says when the server is down, keeps trying, and recovers', async () => {
    openJobPage([() => networkFailure(), jsonResponse(200, finished)]);
    expect(await screen.findByRole('heading', { level: 1, name: "Can't reach the ImageFlow server" })).toBeInTheDocument();
    expect(screen.getByText(/keep trying/)).toBeInTheDocument();
    await nextPoll(2100);
    expect(await screen.findByRole('heading', { level: 1, name: 'Your photos are ready, with some errors' })).toBeInTheDocument();
  });

  it('keeps the last status on screen when the connection drops mid-job', async () => {
    openJobPage([jsonResponse(200, running), () => networkFailure(), jsonResponse(200, finished)]);
    await screen.findByRole('heading', { level: 1, name: 'Processing your photos' });
    await nextPoll();
    expect(await screen.findByText('Lost contact with the server.')).toBeInTheDocument();
    expect(screen.getByText('2 of 3 photos done')).toBeInTheDocument();
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    await user.click(screen.getByRole('button', { name: 'Try again now' }));
    expect(await screen.findByRole('heading', { level: 1, name: 'Your photos are ready, with some errors' })).toBeInTheDocument();
    expect(screen.queryByText('Lost contact with the server.')).not.toBeInTheDocument();
  });

  it('renders file names and errors as text, never as HTML', async () => {
    const evil = '<img src=x onerror="window.pwned=1">.png';
    openJobPage([
      jsonResponse(200, makeJob({ jobId: JOB_ID, status: 'failed', images: [{ filename: evil, status: 'failed', error: '<b>bold</b>' }] })),
    ]);
    expect(await screen.findByRole('heading', { name: evil })).toBeInTheDocument();
    expect(screen.getByText('<b>bold</b>.')).toBeInTheDocument();
    expect(document.querySelector('img[src="x"]')).toBeNull();
    expect(document.querySelector('b')).toBeNull();
  });

  it('offers one download per variant', async () => {
    const job = makeJob({ jobId: JOB_ID, status: 'completed', images: [{ filename: 'pic.jpg', status: 'succeeded' }] });
    const base = `/api/v1/jobs/${JOB_ID}/images/${job.images[0].image_id}/output`;
    job.images[0].outputs = [
      { variant: 'w400-webp', url: `${base}?variant=w400-webp`, width: 400, height: 300, bytes: 9000, content_type: 'image/webp' },
      { variant: 'w800-webp', url: `${base}?variant=w800-webp`, width: 800, height: 600, bytes: 30000, content_type: 'image/webp' },
    ];
    openJobPage([jsonResponse(200, job)]);
    const small = await screen.findByRole('link', { name: 'Download pic.jpg (w400-webp)' });
    expect(small).toHaveAttribute('href', `${base}?variant=w400-webp`);
    expect(small).toHaveAttribute('download', 'pic-w400-webp.webp');
    expect(screen.getByRole('link', { name: 'Download pic.jpg (w800-webp)' })).toBeInTheDocument();
  });

  it('keeps showing a picture while its signed URL changes, and moves on when it fails', async () => {
    const signed = (sig) => {
      const job = makeJob({ jobId: JOB_ID, status: 'processing', images: [{ filename: 'a.jpg', status: 'queued' }, { filename: 'b.jpg', status: 'queued' }] });
      job.images[0].input_url = `https://storage.example/a.jpg?sig=${sig}`;
      return jsonResponse(200, job);
    };
    openJobPage([signed(1), signed(2)]);
    const before = await screen.findByAltText('a.jpg, before');
    expect(before).toHaveAttribute('src', 'https://storage.example/a.jpg?sig=1');
    await nextPoll();
    expect(screen.getByAltText('a.jpg, before')).toHaveAttribute('src', 'https://storage.example/a.jpg?sig=1');
    fireEvent.error(screen.getByAltText('a.jpg, before'));
    expect(screen.getByAltText('a.jpg, before')).toHaveAttribute('src', 'https://storage.example/a.jpg?sig=2');
  });
});

import { act, fireEvent, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import App from '../App.jsx';
import { jsonResponse, makeJob, mockFetch, networkFailure } from '../test/fakes.js';

const JOB_ID = 'c'.repeat(32);

function openJobPage(answers, { view = 'cards' } = {}) {
  // `answers` is the server's successive answers to GET /api/v1/jobs/<id>; the last repeats.
  // `view`: the photos' view last chosen in this browser (these tests look at the cards).
  window.localStorage.setItem('imageflow.contactSheet', JSON.stringify({ view }));
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
    { filename: 'broken.jpg', status: 'failed', error_code: 'corrupt', error: 'the file is truncated: the image data ends early' },
    { filename: 'dog.png', status: 'queued' },
  ],
});
const finished = makeJob({
  jobId: JOB_ID,
  status: 'completed_with_errors',
  images: [
    { filename: 'beach.jpg', status: 'succeeded' },
    { filename: 'broken.jpg', status: 'failed', error_code: 'corrupt', error: 'the file is truncated: the image data ends early' },
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

  it("shows the server's message for an error without a code the page knows", async () => {
    openJobPage([
      jsonResponse(200, makeJob({ jobId: JOB_ID, status: 'failed', images: [{ filename: 'odd.jpg', status: 'failed', error_code: 'something_new', error: 'the moon is in the way' }] })),
    ]);
    const odd = (await screen.findByRole('heading', { name: 'odd.jpg' })).closest('li');
    expect(within(odd).getByText('The moon is in the way.')).toBeInTheDocument();
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
      job.images[0].input_preview_url = `https://storage.example/a.webp?sig=${sig}`;
      return jsonResponse(200, job);
    };
    openJobPage([signed(1), signed(2)]);
    const before = await screen.findByAltText('a.jpg, before');
    expect(before).toHaveAttribute('src', 'https://storage.example/a.webp?sig=1');
    await nextPoll();
    expect(screen.getByAltText('a.jpg, before')).toHaveAttribute('src', 'https://storage.example/a.webp?sig=1');
    fireEvent.error(screen.getByAltText('a.jpg, before'));
    expect(screen.getByAltText('a.jpg, before')).toHaveAttribute('src', 'https://storage.example/a.webp?sig=2');
  });

  it('never shows a waiting photo by its original: its preview once the server has one', async () => {
    const job = (preview) => {
      const answer = makeJob({ jobId: JOB_ID, status: 'processing', images: [{ filename: 'big.jpg', status: 'queued' }] });
      if (preview) answer.images[0].input_preview_url = `/api/v1/jobs/${JOB_ID}/images/${answer.images[0].image_id}/input/preview`;
      return jsonResponse(200, answer);
    };
    openJobPage([job(false), job(true)]);
    const card = (await screen.findByRole('heading', { name: 'big.jpg' })).closest('li');
    expect(within(card).queryByAltText('big.jpg, before')).not.toBeInTheDocument();
    expect(card.querySelector(`img[src$="/input"]`)).toBeNull();
    await nextPoll();
    expect(await within(card).findByAltText('big.jpg, before')).toHaveAttribute('src', expect.stringMatching(/\/input\/preview$/));
  });

  it('says the email is still to come while the job runs, and sent once it is done', async () => {
    const withEmail = (job) => jsonResponse(200, { ...job, email: 'me@example.com' });
    openJobPage([withEmail(running), withEmail(finished)]);
    expect(await screen.findByText("We'll email a link to me@example.com when every photo is done.")).toBeInTheDocument();
    expect(screen.queryByText(/sent to|emailed to/)).not.toBeInTheDocument();
    await nextPoll();
    expect(await screen.findByText('A link to these results was emailed to me@example.com.')).toBeInTheDocument();
  });

  it('says a job still being filled is receiving photos, and what it waits for', async () => {
    const open = makeJob({ jobId: JOB_ID, status: 'open', images: [{ filename: 'a.jpg', status: 'succeeded' }, { filename: 'b.jpg', status: 'queued' }] });
    openJobPage([jsonResponse(200, open), jsonResponse(200, { ...open, status: 'processing' })]);
    expect(await screen.findByRole('heading', { level: 1, name: 'Receiving your photos' })).toBeInTheDocument();
    expect(screen.getByText('Receiving photos')).toBeInTheDocument(); // the status badge, in words
    expect(screen.getByTestId('job-open')).toHaveTextContent('This job is still taking photos: it finishes once their upload is complete.');
    expect(screen.getByText('1 of 2 photos done')).toBeInTheDocument();
    await nextPoll();
    expect(await screen.findByRole('heading', { level: 1, name: 'Processing your photos' })).toBeInTheDocument();
    expect(screen.queryByTestId('job-open')).not.toBeInTheDocument();
  });

  it('shows and downloads two photos of the same name distinctly', async () => {
    const job = makeJob({ jobId: JOB_ID, status: 'completed', images: [{ filename: 'IMG_0001.jpg', status: 'succeeded' }, { filename: 'IMG_0001.jpg', status: 'succeeded' }] });
    job.images.forEach((image) => {
      image.content_type = 'image/webp';
      image.outputs[0].content_type = 'image/webp';
    });
    openJobPage([jsonResponse(200, job)]);
    expect(await screen.findByRole('heading', { name: 'IMG_0001.jpg' })).toBeInTheDocument();
    expect(screen.getByRole('heading', { name: 'IMG_0001 (2).jpg' })).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Download IMG_0001.jpg' })).toHaveAttribute('download', 'IMG_0001.webp');
    expect(screen.getByRole('link', { name: 'Download IMG_0001 (2).jpg' })).toHaveAttribute('download', 'IMG_0001 (2).webp');
  });

  it('compares a photo before and after in a lightbox, with sizes and the saving', async () => {
    openJobPage([jsonResponse(200, finished)]);
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    expect(await screen.findByTestId('job-saving')).toHaveTextContent('406 KB of originals became 102 KB (75% smaller).');
    await user.click(screen.getByRole('button', { name: 'Compare beach.jpg before and after' }));
    const dialog = screen.getByRole('dialog', { name: 'beach.jpg' });
    const id = finished.images[0].image_id;
    expect(within(dialog).getByAltText('beach.jpg, before')).toHaveAttribute('src', `/api/v1/jobs/${JOB_ID}/images/${id}/input`);
    expect(within(dialog).getByAltText('beach.jpg, after')).toHaveAttribute('src', `/api/v1/jobs/${JOB_ID}/images/${id}/output`);
    expect(dialog).toHaveTextContent('Before · 203 KB · JPEG');
    expect(dialog).toHaveTextContent('After · 800×600 · 50.8 KB · JPEG');
    expect(within(dialog).getByTestId('lightbox-saving')).toHaveTextContent('75% smaller than the original');
    expect(within(dialog).getByRole('button', { name: 'Close' })).toHaveFocus();
    await user.click(within(dialog).getByRole('button', { name: 'Next →' }));
    expect(screen.getByRole('dialog', { name: 'dog.png' })).toBeInTheDocument();
    await user.keyboard('{Escape}');
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
  });

  it('filters the photos by state', async () => {
    openJobPage([jsonResponse(200, running)]);
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    await screen.findByRole('heading', { name: 'beach.jpg' });
    await user.click(screen.getByRole('button', { name: 'Failed (1)' }));
    expect(screen.getByRole('button', { name: 'Failed (1)' })).toHaveAttribute('aria-pressed', 'true');
    expect(screen.getByRole('heading', { name: 'broken.jpg' })).toBeInTheDocument();
    expect(screen.queryByRole('heading', { name: 'beach.jpg' })).not.toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Waiting (1)' }));
    expect(screen.getByRole('heading', { name: 'dog.png' })).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'All (3)' }));
    expect(screen.getAllByRole('heading', { level: 3 })).toHaveLength(3);
  });

  it('uses the small previews the server offers for the pictures', async () => {
    const job = makeJob({ jobId: JOB_ID, status: 'completed', images: [{ filename: 'pic.jpg', status: 'succeeded' }] });
    job.images[0].input_preview_url = '/previews/in.webp';
    job.images[0].outputs[0].preview_url = '/previews/out.webp';
    openJobPage([jsonResponse(200, job)]);
    expect(await screen.findByAltText('pic.jpg, before')).toHaveAttribute('src', '/previews/in.webp');
    expect(screen.getByAltText('pic.jpg, after')).toHaveAttribute('src', '/previews/out.webp');
    // The download is still the full result.
    expect(screen.getByRole('link', { name: 'Download pic.jpg' })).toHaveAttribute('href', `/api/v1/jobs/${JOB_ID}/images/${job.images[0].image_id}/output`);
  });

  it('draws only the cards on screen of a big job', async () => {
    // jsdom lays nothing out: give each row of cards the height a browser would.
    const offsetHeight = Object.getOwnPropertyDescriptor(HTMLElement.prototype, 'offsetHeight');
    Object.defineProperty(HTMLElement.prototype, 'offsetHeight', {
      configurable: true,
      get() {
        return this.matches('ul.gallery') ? 430 : 0;
      },
    });
    onTestFinished(() => Object.defineProperty(HTMLElement.prototype, 'offsetHeight', offsetHeight));
    // ...and have the grid's top move up as the window scrolls, as it does in a browser.
    const rect = Element.prototype.getBoundingClientRect;
    vi.spyOn(Element.prototype, 'getBoundingClientRect').mockImplementation(function moved() {
      if (!this.matches('.gallery-rows')) return rect.call(this);
      const top = -window.scrollY;
      return { x: 0, y: top, top, left: 0, right: 0, bottom: top, width: 0, height: 0, toJSON() {} };
    });
    const images = Array.from({ length: 300 }, (_, i) => ({ filename: `photo-${i + 1}.jpg`, status: 'succeeded' }));
    openJobPage([jsonResponse(200, makeJob({ jobId: JOB_ID, status: 'completed', images }))]);
    expect(await screen.findByRole('heading', { name: 'photo-1.jpg' })).toBeInTheDocument();
    const drawn = document.querySelectorAll('li.image-card').length;
    expect(drawn).toBeGreaterThan(0);
    expect(drawn).toBeLessThan(10);
    expect(screen.queryByRole('heading', { name: 'photo-200.jpg' })).not.toBeInTheDocument();
    act(() => {
      Object.defineProperty(window, 'scrollY', { value: 430 * 199, configurable: true });
      window.dispatchEvent(new Event('scroll'));
    });
    expect(await screen.findByRole('heading', { name: 'photo-200.jpg' })).toBeInTheDocument();
    expect(screen.queryByRole('heading', { name: 'photo-1.jpg' })).not.toBeInTheDocument();
    Object.defineProperty(window, 'scrollY', { value: 0, configurable: true });
  });

  it('polls a big running job every 2 seconds rather than every second', async () => {
    // (the view's first page only: the count is what sets the pace)
    const images = Array.from({ length: 12 }, (_, i) => ({ filename: `p${i}.jpg`, status: i < 10 ? 'succeeded' : 'queued' }));
    const big = { ...makeJob({ jobId: JOB_ID, status: 'processing', images }), total: 300, pending: 290 };
    const fetch = openJobPage([jsonResponse(200, big)]);
    await screen.findByText('10 of 300 photos done');
    const calls = fetch.mock.calls.length;
    await nextPoll(1100);
    expect(fetch.mock.calls.length).toBe(calls);
    await nextPoll(1000);
    expect(fetch.mock.calls.length).toBe(calls + 1);
  });

  it('polls with the last ETag, and an unchanged job (304) leaves the page as it is', async () => {
    let calls = 0;
    const fetch = mockFetch(() => {
      calls += 1;
      if (calls === 1) return jsonResponse(200, running, { ETag: '"one"' });
      if (calls === 2) return new Response(null, { status: 304 });
      return jsonResponse(200, finished, { ETag: '"two"' });
    });
    window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    await screen.findByText('2 of 3 photos done');
    await nextPoll();
    expect(fetch.mock.calls[1][1].headers['If-None-Match']).toBe('"one"');
    expect(screen.getByText('2 of 3 photos done')).toBeInTheDocument();
    await nextPoll();
    expect(await screen.findByText('3 of 3 photos done')).toBeInTheDocument();
    expect(fetch.mock.calls[2][1].headers['If-None-Match']).toBe('"one"');
  });
});

describe('job page on a server with API keys', () => {
  const KEY = 'studio-key-0123456789';
  const authorization = (init) => (init?.headers || {}).Authorization ?? null;

  beforeEach(() => window.sessionStorage.clear());
  afterEach(() => window.sessionStorage.clear());

  // The server of API_KEYS=studio=KEY: the job is read only with that key.
  function keyedServer() {
    return mockFetch((url, init) => {
      expect(url).toBe(`/api/v1/jobs/${JOB_ID}`);
      const auth = authorization(init);
      if (!auth) return jsonResponse(401, { error: { code: 'api_key_required', message: 'an API key is required' } });
      if (auth !== `Bearer ${KEY}`) return jsonResponse(401, { error: { code: 'invalid_api_key', message: 'the API key is not valid' } });
      return jsonResponse(200, finished);
    });
  }

  it('opened from the email in a new tab (no key), asks for the key in place and shows the job once it is given', async () => {
    const fetch = keyedServer();
    window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    const field = await screen.findByLabelText('Your API key');
    await vi.waitFor(() => expect(field).toHaveFocus()); // focused by an effect once the 401 is read
    expect(screen.getByRole('heading', { level: 1, name: 'Enter your API key to see this job' })).toBeInTheDocument();
    expect(screen.getByText(JOB_ID)).toBeInTheDocument();
    expect(screen.queryByRole('alert')).toBeNull(); // no key was given yet: nothing was refused

    await user.type(field, `${KEY}{Enter}`);
    expect(await screen.findByRole('heading', { level: 1, name: 'Your photos are ready, with some errors' })).toBeInTheDocument();
    expect(screen.getByRole('button', { name: /^beach\.jpg: / })).toBeInTheDocument(); // its tile on the contact sheet
    expect(screen.queryByLabelText('Your API key')).toBeNull();
    expect(authorization(fetch.mock.calls.at(-1)[1])).toBe(`Bearer ${KEY}`);
    expect(window.location.pathname).toBe(`/jobs/${JOB_ID}`); // no navigation, no reload
    expect(window.sessionStorage.getItem('imageflow.apiKey')).toBe(KEY); // kept for the tab
  });

  it('says when the key given is refused, keeps the field focused, and takes the right one', async () => {
    const fetch = keyedServer();
    window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    await user.type(await screen.findByLabelText('Your API key'), 'not-the-key-0123456789');
    await user.click(screen.getByRole('button', { name: 'Use this key' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('The API key was not accepted. Check it and enter it again in the “API key” field.');
    const field = screen.getByLabelText('Your API key');
    await vi.waitFor(() => expect(field).toHaveFocus());
    expect(field).toHaveAttribute('aria-invalid', 'true');
    expect(authorization(fetch.mock.calls.at(-1)[1])).toBe('Bearer not-the-key-0123456789');

    await user.type(field, KEY);
    await user.click(screen.getByRole('button', { name: 'Use this key' }));
    expect(await screen.findByRole('heading', { level: 1, name: 'Your photos are ready, with some errors' })).toBeInTheDocument();
    expect(authorization(fetch.mock.calls.at(-1)[1])).toBe(`Bearer ${KEY}`);
  });
});

describe('the contact sheet', () => {
  // in upload order; the sheet shows them by name
  const shoot = () => {
    const job = makeJob({
      jobId: JOB_ID,
      status: 'completed_with_errors',
      images: [
        { filename: 'IMG_0010.jpg', status: 'succeeded' },
        { filename: 'IMG_0002.jpg', status: 'failed', error_code: 'corrupt', error: 'the file is truncated' },
        { filename: 'IMG_0001.jpg', status: 'succeeded' },
      ],
    });
    job.name = 'Spring shoot';
    job.images.forEach((image) => {
      image.input_preview_url = `${image.input_url}/preview`;
      if (image.outputs[0]) image.outputs[0].preview_url = `${image.outputs[0].url}/preview`;
    });
    job.images[0].outputs[0].bytes = 20800; // IMG_0010 saved 90 %, IMG_0001 75 %
    return job;
  };
  const tileNames = () => [...document.querySelectorAll('.sheet-tile .sheet-name')].map((el) => el.textContent);

  it('shows the job by name as a dense grid of previews, sorted by name, by saving or by status on request', async () => {
    openJobPage([jsonResponse(200, shoot())], { view: 'sheet' });
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    expect(await screen.findByTestId('job-name')).toHaveTextContent('Spring shoot');
    expect(document.title).toMatch(/^Spring shoot · .+ · ImageFlow$/);
    expect(tileNames()).toEqual(['IMG_0001.jpg', 'IMG_0002.jpg', 'IMG_0010.jpg']);
    // previews only: no original or full result in the grid
    const sources = [...document.querySelectorAll('.sheet-tile img')].map((img) => img.getAttribute('src'));
    expect(sources).toHaveLength(3);
    expect(sources.every((src) => src.endsWith('/preview'))).toBe(true);
    expect(screen.getByRole('button', { name: 'IMG_0002.jpg: Failed' })).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'IMG_0010.jpg: Done, 90% smaller' })).toBeInTheDocument();

    await user.selectOptions(screen.getByLabelText('Sort by'), 'saving');
    expect(tileNames()).toEqual(['IMG_0010.jpg', 'IMG_0001.jpg', 'IMG_0002.jpg']);
    await user.selectOptions(screen.getByLabelText('Sort by'), 'status');
    expect(tileNames()).toEqual(['IMG_0002.jpg', 'IMG_0001.jpg', 'IMG_0010.jpg']);
    await user.click(screen.getByRole('button', { name: 'Done (2)' }));
    expect(tileNames()).toEqual(['IMG_0001.jpg', 'IMG_0010.jpg']);
    // the size and the sort are remembered in this browser
    await user.click(screen.getByRole('button', { name: 'Large thumbnails' }));
    expect(screen.getByRole('button', { name: 'Large thumbnails' })).toHaveAttribute('aria-pressed', 'true');
    expect(JSON.parse(window.localStorage.getItem('imageflow.contactSheet'))).toEqual({ view: 'sheet', size: 'L', sort: 'status' });
  });

  it('moves with the arrow keys, opens the lightbox with Enter on the previews, and loads the full result only on zoom', async () => {
    const job = shoot();
    openJobPage([jsonResponse(200, job)], { view: 'sheet' });
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    const first = await screen.findByRole('button', { name: /^IMG_0001\.jpg: / });
    expect(first).toHaveAttribute('tabindex', '0');
    // only one tile is in the tab order
    expect(document.querySelectorAll('.sheet-button[tabindex="0"]')).toHaveLength(1);
    first.focus();
    await user.keyboard('{ArrowRight}');
    expect(screen.getByRole('button', { name: /^IMG_0002\.jpg: / })).toHaveFocus();
    await user.keyboard('{ArrowRight}');
    const third = screen.getByRole('button', { name: /^IMG_0010\.jpg: / });
    expect(third).toHaveFocus();
    expect(third).toHaveAttribute('tabindex', '0');
    await user.keyboard('{ArrowRight}'); // the end of the sheet: the focus stays
    expect(third).toHaveFocus();
    await user.keyboard('{Enter}');

    const dialog = screen.getByRole('dialog', { name: 'IMG_0010.jpg' });
    const full = job.images[0].outputs[0].url;
    expect(within(dialog).getByAltText('IMG_0010.jpg, before')).toHaveAttribute('src', `${job.images[0].input_url}/preview`);
    expect(within(dialog).getByAltText('IMG_0010.jpg, after')).toHaveAttribute('src', `${full}/preview`);
    expect(document.querySelector(`img[src="${full}"]`)).toBeNull();
    expect(dialog).toHaveTextContent('After · 800×600 · 20.3 KB · JPEG');
    // the arrows go to the other photos shown, in the sheet's order
    await user.keyboard('{ArrowLeft}');
    expect(screen.getByRole('dialog', { name: 'IMG_0002.jpg' })).toHaveTextContent('This image file is damaged or incomplete');
    expect(screen.queryByRole('button', { name: 'Zoom to 100%' })).toBeNull(); // no result to zoom into
    await user.keyboard('{ArrowRight}');

    await user.click(screen.getByRole('button', { name: 'Zoom to 100%' }));
    const zoomed = screen.getByAltText('IMG_0010.jpg, after, at 100%');
    expect(zoomed).toHaveAttribute('src', full);
    expect(screen.getByRole('button', { name: 'Fit to screen' })).toHaveAttribute('aria-pressed', 'true');
    expect(within(screen.getByRole('dialog')).getByRole('status')).toHaveTextContent('Loading the full-size result');
    // zoomed, the arrows pan the picture rather than change photos
    await user.keyboard('{ArrowRight}');
    expect(screen.getByRole('dialog', { name: 'IMG_0010.jpg' })).toBeInTheDocument();
    await user.keyboard('{Escape}');
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
  });

  it('compares before and after with a swipe slider on a phone', async () => {
    vi.stubGlobal('matchMedia', (query) => ({ matches: query === '(max-width: 600px)', addEventListener() {}, removeEventListener() {} }));
    openJobPage([jsonResponse(200, shoot())], { view: 'sheet' });
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    await user.click(await screen.findByRole('button', { name: /^IMG_0001\.jpg: / }));
    const slider = screen.getByRole('slider', { name: 'Before and after: slide to compare' });
    const after = screen.getByAltText('IMG_0001.jpg, after');
    expect(after.style.clipPath).toBe('inset(0 0 0 50%)');
    fireEvent.change(slider, { target: { value: '20' } });
    expect(after.style.clipPath).toBe('inset(0 0 0 20%)');
    // the slider's arrows move the slider, not to another photo
    slider.focus();
    await user.keyboard('{ArrowLeft}');
    expect(screen.getByRole('dialog', { name: 'IMG_0001.jpg' })).toBeInTheDocument();
  });
});

describe("the job's name", () => {
  it('is given on the job page (PATCH), then shown on the page and in the tab', async () => {
    let job = makeJob({ jobId: JOB_ID, status: 'completed', images: [{ filename: 'a.jpg', status: 'succeeded' }] });
    const fetch = mockFetch((url, init) => {
      expect(url).toBe(`/api/v1/jobs/${JOB_ID}`);
      if (init?.method === 'PATCH') {
        const { name } = JSON.parse(init.body);
        job = { ...job, name: name || null };
      }
      return jsonResponse(200, job);
    });
    window.history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    await user.click(await screen.findByRole('button', { name: 'Name this job' }));
    const field = screen.getByLabelText('Job name');
    expect(field).toHaveFocus();
    await user.type(field, '  Spring shoot {Enter}');
    expect(await screen.findByTestId('job-name')).toHaveTextContent('Spring shoot');
    const patch = fetch.mock.calls.find(([, init]) => init?.method === 'PATCH');
    expect(JSON.parse(patch[1].body)).toEqual({ name: 'Spring shoot' });
    await vi.waitFor(() => expect(document.title).toMatch(/^Spring shoot · .+ · ImageFlow$/));
    expect(screen.getByRole('button', { name: 'Rename' })).toBeInTheDocument();
  });
});

describe('the contact sheet of a 1,000-photo job', () => {
  it('draws only the tiles near the screen', async () => {
    const images = Array.from({ length: 1000 }, (_, i) => ({ filename: `photo-${String(i + 1).padStart(4, '0')}.jpg`, status: 'succeeded' }));
    openJobPage([jsonResponse(200, makeJob({ jobId: JOB_ID, status: 'completed', images }))], { view: 'sheet' });
    expect(await screen.findByRole('button', { name: /^photo-0001\.jpg: / })).toBeInTheDocument();
    const drawn = document.querySelectorAll('li.sheet-tile').length;
    expect(drawn).toBeGreaterThan(0);
    expect(drawn).toBeLessThan(20);
    expect(document.querySelectorAll('.sheet-tile img')).toHaveLength(drawn); // a preview per tile drawn, no more
  });
});

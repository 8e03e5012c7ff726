// The upload page's import by address, API key, estimate and overlay logo (issues 16 and 17),
// against a scripted server: what a person sees, and what the page sends.
import { act, screen, waitFor, within } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import { FakeXHR, jsonResponse, makeFile, mockFetch, operationsFixture } from '../../test/fakes.js';
import { renderReady, settle } from '../../test/uploadPage.jsx';

const JOB_ID = 'c'.repeat(32);
let options;          // what GET /api/v1/operations answers
let urlJobAnswer;     // (body) => Response for a JSON POST /api/v1/jobs {urls}
let openJobAnswer;    // (body) => Response for a JSON POST /api/v1/jobs {open: true}
let requiredKey;      // the key the server wants (null: keys off)
let savedPresets;     // the caller's presets, as the server keeps them

function headerOf(init, name) {
  const headers = init?.headers || {};
  return headers[name] ?? null;
}

function serve() {
  return mockFetch((url, init) => {
    if (requiredKey && !['/api/v1/operations', '/api/v1/operations/validate'].includes(url) && headerOf(init, 'Authorization') !== `Bearer ${requiredKey}`) {
      return jsonResponse(401, { error: { code: headerOf(init, 'Authorization') ? 'invalid_api_key' : 'api_key_required', message: 'an API key is required' } });
    }
    if (url === '/api/v1/operations') return jsonResponse(200, options);
    if (url === '/api/v1/presets' && init?.method === 'POST') {
      const { name, operations } = JSON.parse(init.body);
      savedPresets = [...savedPresets.filter((p) => p.name !== name), { name, operations, created_at: 'x', updated_at: 'x' }];
      return jsonResponse(201, savedPresets.at(-1));
    }
    if (url === '/api/v1/presets') return jsonResponse(200, { presets: savedPresets });
    if (url === '/api/v1/operations/validate') return jsonResponse(200, { operations: JSON.parse(init.body).operations || [] });
    if (url === '/api/v1/jobs' && init?.method === 'POST') {
      const body = JSON.parse(init.body);
      if (body.urls) return urlJobAnswer(body);
      if (body.open && openJobAnswer) return openJobAnswer(body);
      return jsonResponse(415, { error: { code: 'unsupported_media_type', message: 'no open jobs here' } });
    }
    if (url.endsWith('/close')) return jsonResponse(200, { status: 'processing' });
    if (url.startsWith('/api/v1/jobs/')) return jsonResponse(200, { job_id: JOB_ID, status: 'queued', total: 1, succeeded: 0, failed: 0, images: [], links: {} });
    throw new Error(`unexpected fetch ${url}`);
  });
}

async function sentXhr(count = 1) {
  await waitFor(() => expect(FakeXHR.instances.length).toBeGreaterThanOrEqual(count));
  return FakeXHR.instances[count - 1];
}

beforeEach(() => {
  FakeXHR.install();
  window.sessionStorage.clear();
  options = { ...operationsFixture, limits: { ...operationsFixture.limits, max_urls_per_job: 12, max_csv_bytes: 32 * 1024 * 1024 } };
  urlJobAnswer = null;
  openJobAnswer = null;
  requiredKey = null;
  savedPresets = [];
});

describe('import by address', () => {
  it('states the limits, refuses lines that are not addresses before sending, and maps the server refusals to the lines typed', async () => {
    const fetch = serve();
    let sentBody = null;
    urlJobAnswer = (body) => {
      sentBody = body;
      return jsonResponse(202, {
        job_id: JOB_ID, status: 'queued', total: 1, images: [{ image_id: '1', filename: 'a.jpg', source_url: body.urls[0] }],
        rejected: [{ row: 2, url: body.urls[1], error: { code: 'blocked_address', message: 'row 2: the address is not public' } }],
        links: {},
      });
    };
    const user = await renderReady();
    await user.click(screen.getByRole('radio', { name: /From image addresses/ }));
    expect(screen.getByTestId('url-limits')).toHaveTextContent('up to 12 addresses per job');
    expect(screen.getByTestId('url-limits')).toHaveTextContent('a CSV of up to 32 MB');
    await user.type(screen.getByLabelText('Image addresses'), 'https://cdn.example.com/a.jpg{enter}ftp://old.example/b.jpg{enter}{enter}http://10.0.0.1/c.jpg');
    const refused = screen.getByTestId('refused-rows');
    expect(refused).toHaveTextContent('1 address is not sent:');
    expect(refused).toHaveTextContent('Line 2: ftp://old.example/b.jpg is not an http:// or https:// address');
    expect(screen.getByText('2 addresses to import.')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Import 2 images' }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${JOB_ID}`));
    expect(sentBody).toEqual({ urls: ['https://cdn.example.com/a.jpg', 'http://10.0.0.1/c.jpg'], preset: 'web' });
    expect(fetch.mock.calls.some(([url]) => url === '/api/v1/operations/validate')).toBe(true);
    const notice = (await screen.findByText(/The server refused 1 file/)).closest('.notice');
    // the server's row 2 is the fourth line the person typed
    expect(notice).toHaveTextContent('http://10.0.0.1/c.jpg: Line 4: the address is not public');
  });

  it('shows a long list of server refusals cut short, with how many more', async () => {
    serve();
    urlJobAnswer = (body) =>
      jsonResponse(400, {
        error: {
          code: 'no_valid_urls', message: 'none of the URLs can be imported',
          details: body.urls.map((url, i) => ({ row: i + 1, url, error: { code: 'blocked_address', message: `row ${i + 1}: the address is not public` } })),
        },
      });
    const user = await renderReady();
    await user.click(screen.getByRole('radio', { name: /From image addresses/ }));
    const urls = Array.from({ length: 12 }, (_, i) => `http://192.168.0.${i + 1}/p.jpg`);
    await user.type(screen.getByLabelText('Image addresses'), urls.join('{enter}'));
    await user.click(screen.getByRole('button', { name: 'Import 12 images' }));
    const rows = await screen.findByTestId('server-refused-rows');
    expect(rows).toHaveTextContent('The server refused these addresses:');
    expect(within(rows).getAllByRole('listitem')).toHaveLength(11);
    expect(rows).toHaveTextContent('Line 1: http://192.168.0.1/p.jpg the address is not public');
    expect(rows).toHaveTextContent('…and 2 more.');
    expect(screen.getByText('none of the URLs can be imported')).toBeInTheDocument();
  });

  it('sends a CSV file as the csv field with the steps, and says more addresses than a job takes before sending', async () => {
    serve();
    const user = await renderReady();
    await user.click(screen.getByRole('radio', { name: /From image addresses/ }));
    await user.type(screen.getByLabelText('Image addresses'), Array.from({ length: 13 }, (_, i) => `https://a.example/${i}.jpg`).join('{enter}'));
    await user.click(screen.getByRole('button', { name: 'Import 13 images' }));
    expect(await screen.findByRole('link', { name: 'Import at most 12 addresses in one job; there are 13.' })).toBeInTheDocument();
    const csv = new File(['url,name\nhttps://a.example/x.jpg,Shoe\n'], 'products.csv', { type: 'text/csv' });
    await user.upload(screen.getByTestId('csv-input'), csv);
    expect(screen.getByText(/Using the CSV file below/)).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Import the images of the CSV' }));
    const xhr = await sentXhr();
    expect(xhr.url).toBe('/api/v1/jobs');
    expect(xhr.body.get('csv').name).toBe('products.csv');
    expect(xhr.body.get('preset')).toBe('web');
    expect(xhr.body.getAll('files')).toEqual([]);
    act(() => xhr.respond(202, { job_id: JOB_ID, status: 'queued', total: 1, images: [{ image_id: '1', filename: 'Shoe' }], rejected: [], links: {} }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${JOB_ID}`));
  });
});

describe('API key', () => {
  it('asks for a key when the server requires one, sends it on every call, and says when it is refused', async () => {
    requiredKey = 'secret-key-0123456789';
    options = { ...options, api_keys_required: true };
    const fetch = serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg')]);
    await settle();
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    expect(await screen.findByRole('link', { name: 'Enter your API key: this server asks for one.' })).toBeInTheDocument();
    expect(FakeXHR.instances).toHaveLength(0);

    await user.type(screen.getByLabelText('Your API key'), 'wrong-key-0123456789');
    await user.click(screen.getByRole('button', { name: 'Use this key' }));
    expect(screen.getByTestId('api-key-status')).toHaveTextContent('Using the key ending in 6789.');
    expect(window.sessionStorage.getItem('imageflow.apiKey')).toBe('wrong-key-0123456789');
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    // the server's check of the steps is public; the job (opened first) is not
    const alert = await screen.findByText(/The API key was not accepted/, { selector: '#api-key-error' });
    expect(alert).toBeInTheDocument();
    const opened = fetch.mock.calls.find(([url, init]) => url === '/api/v1/jobs' && init?.method === 'POST');
    expect(headerOf(opened[1], 'Authorization')).toBe('Bearer wrong-key-0123456789');
    expect(FakeXHR.instances).toHaveLength(0);

    await user.type(screen.getByLabelText('Your API key'), requiredKey);
    await user.click(screen.getByRole('button', { name: 'Use this key' }));
    // saved presets are the caller's: read again with the new key
    await waitFor(() => expect(fetch.mock.calls.some(([url, init]) => url === '/api/v1/presets' && headerOf(init, 'Authorization') === `Bearer ${requiredKey}`)).toBe(true));
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    const accepted = await sentXhr();
    expect(accepted.headers.Authorization).toBe(`Bearer ${requiredKey}`);
    act(() => accepted.respond(202, { job_id: JOB_ID, status: 'queued', images: [{ image_id: '1', filename: 'a.jpg' }], rejected: [] }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${JOB_ID}`));
    // the job page polls with the key too
    await waitFor(() => expect(fetch.mock.calls.some(([url, init]) => url === `/api/v1/jobs/${JOB_ID}` && headerOf(init, 'Authorization') === `Bearer ${requiredKey}`)).toBe(true));
  });

  it('shows no key field when the server asks for none', async () => {
    serve();
    await renderReady();
    expect(screen.queryByLabelText('Your API key')).not.toBeInTheDocument();
  });
});

describe('estimate', () => {
  const answer = {
    estimate: true, accepted: true, reasons: [],
    images: [{ filename: 'a.jpg', predicted_output_bytes: 300000 }],
    refused: [{ filename: 'b.jpg', error: { code: 'unsupported_image', message: 'b.jpg: not an image ImageFlow can read' } }],
    totals: { images: 1, refused: 1, bytes_in: 3 * 1024 * 1024, predicted_bytes_out: 300 * 1024, predicted_saved_percent: 90.2, cpu_seconds: 2.4, wall_seconds: 41 },
    processor_slots: 2, images_queued_ahead: 5, samples: [],
  };

  it('is asked with the same body and estimate=true, said in words, marked stale after a change, and never blocks Process', async () => {
    serve();
    const user = await renderReady();
    expect(screen.getByRole('button', { name: 'Estimate size and time' })).toBeDisabled();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg'), makeFile('b.jpg')]);
    await settle();
    await user.click(screen.getByRole('button', { name: 'Estimate size and time' }));
    const xhr = await sentXhr();
    expect(xhr.url).toBe('/api/v1/jobs');
    expect(xhr.body.get('estimate')).toBe('true');
    expect(xhr.body.get('preset')).toBe('web');
    expect(xhr.body.getAll('files').map((f) => f.name)).toEqual(['a.jpg', 'b.jpg']);
    expect(screen.getByText(/Measuring a few of your photos/)).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Process 2 photos' })).toBeEnabled();
    act(() => xhr.respond(200, answer));
    expect(await screen.findByTestId('estimate-size')).toHaveTextContent('Results of about 300 KB from 3 MB of photos: 90% smaller.');
    expect(screen.getByTestId('estimate-time')).toHaveTextContent('Ready in about 41 seconds once sent, with 2 photos processed at a time and 5 photos of other jobs ahead (about 2 seconds of processing in all).');
    expect(screen.getByTestId('estimate-refused')).toHaveTextContent('b.jpg: not an image ImageFlow can read');
    expect(screen.queryByTestId('estimate-stale')).not.toBeInTheDocument();
    await user.click(screen.getByRole('radio', { name: /thumbnail/i }));
    expect(screen.getByTestId('estimate-stale')).toHaveTextContent('The photos or steps changed since this estimate.');
    expect(screen.getByRole('button', { name: 'Estimate again' })).toBeEnabled();
    await user.click(screen.getByRole('button', { name: 'Process 2 photos' }));
    const job = await sentXhr(2);
    expect(job.body.get('estimate')).toBeNull();
    expect(job.body.get('preset')).toBe('thumbnail');
  });

  it('measures the photos that fit in one request and scales the figures to all of them', async () => {
    options = { ...options, limits: { ...options.limits, max_request_bytes: 1024 * 1024 + 2500 } };
    serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg', 'image/jpeg', 1000), makeFile('b.jpg', 'image/jpeg', 1000), makeFile('c.jpg', 'image/jpeg', 1000)]);
    await settle();
    await user.click(screen.getByRole('button', { name: 'Estimate size and time' }));
    const xhr = await sentXhr();
    expect(xhr.body.getAll('files')).toHaveLength(2);
    act(() => xhr.respond(200, { ...answer, refused: [], totals: { ...answer.totals, bytes_in: 2000, predicted_bytes_out: 1000 } }));
    expect(await screen.findByTestId('estimate-sample')).toHaveTextContent('Measured on the first 2 of 3 photos');
    expect(screen.getByTestId('estimate-size')).toHaveTextContent('Results of about 1.5 KB from 2.9 KB of photos');
  });
});

describe('overlay logo', () => {
  async function addOverlayStep(user) {
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'overlay');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
  }

  it('asks for the logo file, then sends it in the overlay field of the one-request upload, named by the step', async () => {
    serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg')]);
    await settle();
    await addOverlayStep(user);
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    expect(await screen.findByText('Logo needs a file: choose a PNG or WebP.')).toBeInTheDocument();
    await user.upload(screen.getByTestId('overlay-file'), makeFile('logo.png', 'image/png', 500));
    expect(screen.getByText(/Chosen: logo.png \(500 B\)/)).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    // a server without open jobs refuses the opening request; the page sends it all in one
    const opening = await sentXhr();
    expect(opening.body.get('open')).toBe('true');
    act(() => opening.respond(415, { error: { code: 'unsupported_media_type', message: 'no open jobs' } }));
    const xhr = await sentXhr(2);
    expect(xhr.body.get('open')).toBeNull();
    expect(xhr.body.getAll('overlay').map((f) => f.name)).toEqual(['logo.png']);
    expect(xhr.body.getAll('files').map((f) => f.name)).toEqual(['a.jpg']);
    expect(JSON.parse(xhr.body.get('operations'))).toEqual([expect.objectContaining({ op: 'overlay', image: 'logo.png', position: 'southeast' })]);
  });

  it('opens an open job with the logo (multipart open=true) before the photos go to its files link', async () => {
    serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg')]);
    await settle();
    await addOverlayStep(user);
    await user.upload(screen.getByTestId('overlay-file'), makeFile('logo.png', 'image/png', 500));
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    const opening = await sentXhr();
    expect(opening.body.get('open')).toBe('true');
    expect(opening.body.getAll('overlay').map((f) => f.name)).toEqual(['logo.png']);
    expect(opening.body.getAll('files')).toEqual([]);
    const links = { self: `/api/v1/jobs/${JOB_ID}`, files: `/api/v1/jobs/${JOB_ID}/files`, close: `/api/v1/jobs/${JOB_ID}/close` };
    act(() => opening.respond(201, { job_id: JOB_ID, status: 'open', total: 0, links }));
    const files = await sentXhr(2);
    expect(files.url).toBe(links.files);
    expect(files.body.getAll('overlay')).toEqual([]);
    act(() => files.respond(200, { images: [{ image_id: '1', filename: 'a.jpg' }], rejected: [] }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${JOB_ID}`));
  });

  it('takes a web address for the logo instead, and asks for one that is an address', async () => {
    serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg')]);
    await settle();
    await addOverlayStep(user);
    await user.click(screen.getByRole('radio', { name: 'An address (URL)' }));
    await user.type(screen.getByLabelText('Address of the logo'), 'logo.png');
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    expect(await screen.findByText('Logo must be a web address starting with https://.')).toBeInTheDocument();
    await user.clear(screen.getByLabelText('Address of the logo'));
    await user.type(screen.getByLabelText('Address of the logo'), 'https://brand.example/logo.png');
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    const xhr = await sentXhr();   // no logo file: the JSON open-job request was refused (415), one request
    expect(xhr.body.get('open')).toBeNull();
    expect(xhr.body.getAll('overlay')).toEqual([]);
    expect(JSON.parse(xhr.body.get('operations'))[0].image).toBe('https://brand.example/logo.png');
  });
});

describe('a saved preset with a logo', () => {
  const shopLogo = [
    { op: 'resize', width: 800, fit: 'contain' },
    { op: 'overlay', image: 'logo.png', position: 'northwest', opacity: 0.8 },
  ];
  const jobPosts = (fetch) => fetch.mock.calls.filter(([url, init]) => url === '/api/v1/jobs' && init?.method === 'POST');

  it('saves the steps with the logo file by its name', async () => {
    serve();
    const user = await renderReady();
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'overlay');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.upload(screen.getByTestId('overlay-file'), makeFile('logo.png', 'image/png', 500));
    await user.type(screen.getByLabelText('Save these steps as a preset'), 'Shop logo');
    await user.click(screen.getByRole('button', { name: 'Save preset' }));
    expect(await screen.findByText('Saved as “Shop logo”. It is now among the presets.')).toBeInTheDocument();
    expect(savedPresets).toEqual([expect.objectContaining({ name: 'Shop logo', operations: [expect.objectContaining({ op: 'overlay', image: 'logo.png' })] })]);
  });

  it('asks for the logo file when the preset is chosen, blocks Process until it is given, then sends it under the name the preset uses', async () => {
    savedPresets = [{ name: 'Shop logo', operations: shopLogo, created_at: 'x', updated_at: 'x' }];
    const fetch = serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg')]);
    await settle();
    await user.click(await screen.findByRole('radio', { name: /Shop logo/ }));
    const logoInput = screen.getByLabelText('Logo file “logo.png”');
    expect(logoInput).toHaveAttribute('type', 'file');
    expect(screen.getByText('“Shop logo” puts a logo on the photos: choose its file to send with them.')).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    const problem = 'Choose the logo file for “logo.png”: this preset puts it on every photo, and a picked file is not kept with the preset.';
    expect(await screen.findByText(problem)).toHaveAttribute('id', `${logoInput.id}-error`);
    expect(logoInput).toHaveAttribute('aria-invalid', 'true');
    const summaryLink = screen.getByRole('link', { name: 'Choose the logo file “logo.png” the preset uses.' });
    expect(summaryLink).toHaveAttribute('href', `#${logoInput.id}`);
    expect(FakeXHR.instances).toHaveLength(0);   // nothing was sent
    expect(jobPosts(fetch)).toHaveLength(0);

    await user.upload(logoInput, makeFile('brand-2024.png', 'image/png', 700));
    expect(screen.queryByText(problem)).toBeNull();
    expect(screen.getByText('Chosen: brand-2024.png (700 B). It is sent with the photos as “logo.png”, the name the preset uses.')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    // the logo goes in the opening request of the open job, named as the preset's overlay names it
    const opening = await sentXhr();
    expect(opening.body.get('open')).toBe('true');
    expect(opening.body.get('preset')).toBeNull();
    expect(JSON.parse(opening.body.get('operations'))).toEqual(shopLogo);
    const [logo] = opening.body.getAll('overlay');
    expect(logo.name).toBe('logo.png');
    expect(logo.size).toBe(700);
    act(() => opening.respond(415, { error: { code: 'unsupported_media_type', message: 'no open jobs' } }));
    const xhr = await sentXhr(2);   // a server without open jobs: all in one request, the logo too
    expect(xhr.body.getAll('overlay').map((f) => f.name)).toEqual(['logo.png']);
    expect(xhr.body.getAll('files').map((f) => f.name)).toEqual(['a.jpg']);
  });

  it('sends the logo with the estimate too, and carries it into "Customise this preset"', async () => {
    savedPresets = [{ name: 'Shop logo', operations: shopLogo, created_at: 'x', updated_at: 'x' }];
    serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('a.jpg')]);
    await settle();
    await user.click(await screen.findByRole('radio', { name: /Shop logo/ }));
    await user.upload(screen.getByLabelText('Logo file “logo.png”'), makeFile('brand.png', 'image/png', 700));
    await user.click(screen.getByRole('button', { name: 'Estimate size and time' }));
    const estimate = await sentXhr();
    expect(estimate.body.get('estimate')).toBe('true');
    expect(estimate.body.getAll('overlay').map((f) => f.name)).toEqual(['logo.png']);

    await user.click(screen.getByRole('button', { name: 'Customise this preset' }));
    expect(screen.getByText(/Chosen: brand.png \(700 B\)/)).toBeInTheDocument();
  });

  it('refuses a logo file when the photos come from web addresses, saying so beside the preset', async () => {
    savedPresets = [{ name: 'Shop logo', operations: shopLogo, created_at: 'x', updated_at: 'x' }];
    const fetch = serve();
    const user = await renderReady();
    await user.click(await screen.findByRole('radio', { name: /Shop logo/ }));
    await user.click(screen.getByRole('radio', { name: /From image addresses/ }));
    await user.type(screen.getByLabelText('Image addresses', { exact: true }), 'https://cdn.example.com/a.jpg');
    await user.upload(screen.getByLabelText('Logo file “logo.png”'), makeFile('logo.png', 'image/png', 700));
    await user.click(screen.getByRole('button', { name: 'Import 1 image' }));
    expect(await screen.findByText(/“logo.png” is a file, and a job of web addresses cannot send one/)).toBeInTheDocument();
    expect(jobPosts(fetch)).toHaveLength(0);
  });
});

describe('estimate of a photo too large for one request', () => {
  it('says why there is no estimate and sends nothing', async () => {
    options = { ...options, limits: { ...options.limits, max_request_bytes: 1024 * 1024 + 500 } };
    serve();
    const user = await renderReady();
    await user.upload(screen.getByTestId('file-input'), [makeFile('big.jpg', 'image/jpeg', 1000)]);
    await settle();
    await user.click(screen.getByRole('button', { name: 'Estimate size and time' }));
    expect(await screen.findByText('No estimate: the first photo alone is larger than the server takes in one request.')).toBeInTheDocument();
    expect(FakeXHR.instances).toHaveLength(0);
  });
});

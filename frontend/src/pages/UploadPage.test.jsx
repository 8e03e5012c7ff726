import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import App from '../App.jsx';
import { FakeXHR, jsonResponse, makeFile, mockFetch, networkFailure, operationsFixture } from '../test/fakes.js';
import { renderReady, settle } from '../test/uploadPage.jsx';

// The server's check of the steps before upload: valid unless the test says otherwise.
let validateAnswer = null;
// The caller's saved presets, as the server keeps them.
let savedPresets = [];
// How the server answers a JSON POST /api/v1/jobs {open: true}: 415, as a server without
// open jobs does, unless a test serves open jobs.
let openJobAnswer = null;
// The job GET /api/v1/jobs/<id> gives, when a test needs a particular one.
let jobAnswer = null;

function serveOperations(answer = () => jsonResponse(200, operationsFixture)) {
  return mockFetch((url, init) => {
    if (url === '/api/v1/operations') return answer();
    if (url === '/api/v1/jobs' && init?.method === 'POST') {
      return openJobAnswer ? openJobAnswer(JSON.parse(init.body)) : jsonResponse(415, { error: { code: 'unsupported_media_type', message: "a JSON body must be an object with a 'urls' list" } });
    }
    if (url.endsWith('/close') && init?.method === 'POST') return jsonResponse(200, { status: 'processing' });
    if (url === '/api/v1/presets') {
      if (init?.method === 'POST') {
        const { name, operations } = JSON.parse(init.body);
        const preset = { name, operations, created_at: '2024-05-01T10:00:00.000Z', updated_at: '2024-05-01T10:00:00.000Z' };
        savedPresets = [...savedPresets.filter((p) => p.name !== name), preset];
        return jsonResponse(201, preset);
      }
      return jsonResponse(200, { presets: savedPresets });
    }
    if (url.startsWith('/api/v1/presets/') && init?.method === 'DELETE') {
      const name = decodeURIComponent(url.slice('/api/v1/presets/'.length));
      savedPresets = savedPresets.filter((p) => p.name !== name);
      return new Response(null, { status: 204 });
    }
    if (url === '/api/v1/operations/validate') {
      const body = JSON.parse(init.body);
      return validateAnswer ? validateAnswer(body) : jsonResponse(200, { operations: body.operations || operationsFixture.presets[body.preset] });
    }
    if (url.startsWith('/api/v1/jobs/')) return jsonResponse(200, jobAnswer || { job_id: 'f'.repeat(32), status: 'queued', total: 1, succeeded: 0, failed: 0, images: [], links: {} });
    throw new Error(`unexpected fetch ${url}`);
  });
}

// The upload starts once the server has checked the steps: wait for it.
async function sent() {
  await waitFor(() => expect(FakeXHR.instances.length).toBeGreaterThan(0));
  return FakeXHR.last();
}

async function addFiles(user, files) {
  await user.upload(screen.getByTestId('file-input'), files);
  await settle();
}

beforeEach(() => {
  FakeXHR.install();
  validateAnswer = null;
  savedPresets = [];
  openJobAnswer = null;
  jobAnswer = null;
});

describe('upload page', () => {
  it('offers the server presets, web chosen, each described in words', async () => {
    serveOperations();
    await renderReady();
    expect(screen.getByRole('radio', { name: /web/i })).toBeChecked();
    expect(screen.getByRole('radio', { name: /thumbnail/i })).not.toBeChecked();
    expect(screen.getByText('Save as JPEG at quality 50')).toBeInTheDocument();
    // Every limit is said before a file is picked.
    expect(
      screen.getByText('JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF, HEIC, JPEG XL, TGA, JPEG 2000, ICO, Netpbm, SGI, DDS, camera RAW, SVG, PDF or PSD · up to 25 MB each · up to 100 photos per job, of any total size · up to 50 megapixels each'),
    ).toBeInTheDocument();
  });

  it('lists chosen photos with a thumbnail and size, and explains the ones it refuses', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('cat.jpg', 'image/jpeg', 2048), makeFile('notes.txt', 'text/plain', 10)]);
    expect(screen.getByRole('heading', { name: /1 photo chosen/ })).toBeInTheDocument();
    expect(screen.getByText('cat.jpg')).toBeInTheDocument();
    expect(screen.getByText(/2 KB · JPEG/)).toBeInTheDocument();
    expect(document.querySelector('img.thumb').getAttribute('src')).toMatch(/^blob:/);
    const warning = screen.getByText('1 file was not added').closest('.notice');
    expect(within(warning).getByText('notes.txt')).toBeInTheDocument();
    expect(warning).toHaveTextContent(/is a text\/plain file; ImageFlow accepts JPEG/);
    await user.click(screen.getByRole('button', { name: 'Remove cat.jpg' }));
    expect(screen.queryByText('cat.jpg')).not.toBeInTheDocument();
    expect(URL.revokeObjectURL).toHaveBeenCalled();
  });

  it('renders file names as text, never as HTML', async () => {
    serveOperations();
    const user = await renderReady();
    const evil = '<img src=x onerror="window.pwned=1">.jpg';
    await addFiles(user, [makeFile(evil)]);
    expect(screen.getByText(evil)).toBeInTheDocument();
    expect(document.querySelector('img[src="x"]')).toBeNull();
    expect(window.pwned).toBeUndefined();
  });

  it('uploads with progress, then opens the job page', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg'), makeFile('b.jpg')]);
    await user.type(screen.getByLabelText('Email address'), 'me@example.com');
    await user.click(screen.getByRole('button', { name: 'Process 2 photos' }));

    const xhr = FakeXHR.last();
    expect(xhr.body.get('preset')).toBe('web');
    expect(xhr.body.get('email')).toBe('me@example.com');
    expect(xhr.body.getAll('files')).toHaveLength(2);
    act(() => xhr.progress(1000, 4000));
    const bar = screen.getByLabelText('Uploading');
    expect(bar).toHaveAttribute('value', '1000');
    expect(screen.getByText('1000 B of 3.9 KB sent')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /Process/ })).not.toBeInTheDocument();

    const jobId = 'f'.repeat(32);
    act(() => xhr.respond(202, { job_id: jobId, status: 'queued', images: [{ image_id: '1', filename: 'a.jpg' }], rejected: [{ filename: 'b.jpg', error: { code: 'unsupported', message: 'b.jpg: not a supported image' } }] }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${jobId}`));
    expect(await screen.findByText(/Upload complete: 1 photo sent/)).toBeInTheDocument();
    expect(screen.getByText(/The server refused 1 file/).closest('.notice')).toHaveTextContent('b.jpg: Not a supported image.');
  });

  it('builds an operation list from the schema and sends it', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    const picker = screen.getByLabelText('Add a step');
    // Every operation of the schema is offered, named for people.
    expect(within(picker).getAllByRole('option').map((o) => o.value)).toEqual(
      operationsFixture.schema.items.oneOf.map((ref) => operationsFixture.schema.$defs[ref.$ref.split('/').pop()].properties.op.const),
    );
    await user.selectOptions(picker, 'resize');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.type(screen.getByLabelText(/^Width/), '640');
    await user.selectOptions(screen.getByLabelText(/^Fit/), 'cover');
    await user.selectOptions(picker, 'grayscale');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.selectOptions(picker, 'format');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.selectOptions(screen.getByLabelText(/^Format/), 'png');
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));

    const ops = JSON.parse(FakeXHR.last().body.get('operations'));
    expect(FakeXHR.last().body.get('preset')).toBeNull();
    expect(ops).toEqual([
      { op: 'resize', width: 640, fit: 'cover', upscale: false, gravity: 'center' },
      { op: 'grayscale' },
      { op: 'format', format: 'png', progressive: false, lossless: false, background: '#ffffff' },
    ]);
  });

  it('starts custom steps from a preset', async () => {
    serveOperations();
    const user = await renderReady();
    await user.click(screen.getByRole('radio', { name: /thumbnail/i }));
    await user.click(screen.getByRole('button', { name: 'Customise this preset' }));
    expect(screen.getByRole('heading', { name: 'Step 1: Resize' })).toBeInTheDocument();
    expect(screen.getByLabelText(/^Width/)).toHaveValue(256);
  });

  it('checks the form before sending and says what to fix', async () => {
    serveOperations();
    const user = await renderReady();
    await user.type(screen.getByLabelText('Email address'), 'not-an-address');
    await user.click(screen.getByRole('button', { name: 'Process photos' }));
    const summary = screen.getByText('Before sending, please fix:').closest('.notice');
    expect(summary).toHaveTextContent('Add at least one photo.');
    expect(summary).toHaveTextContent(/Enter a whole email address/);
    expect(screen.getByLabelText('Email address')).toHaveAttribute('aria-invalid', 'true');
    expect(FakeXHR.instances).toHaveLength(0);

    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'rotate');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.clear(screen.getByLabelText('Email address'));
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    expect(screen.getByText('Degrees is required.')).toBeInTheDocument();
    expect(FakeXHR.instances).toHaveLength(0);
  });

  it("shows the server's message when it refuses the upload, on the step it names", async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.click(screen.getByRole('button', { name: 'Add step' })); // resize, no size given
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    await sent();
    act(() =>
      FakeXHR.last().respond(422, {
        error: {
          code: 'invalid_operations',
          message: 'operations[0] (resize): give width, height or both',
          details: [{ index: 0, op: 'resize', field: null, message: 'give width, height or both' }],
        },
      }),
    );
    // Said once, on the step, counting steps from 1 as the page does; the summary links there.
    expect(await screen.findAllByText('Give width, height or both.')).toHaveLength(1);
    expect(screen.queryByText(/operations\[0\]/)).not.toBeInTheDocument();
    expect(screen.queryByText('The server refused the upload')).not.toBeInTheDocument();
    const link = screen.getByRole('link', { name: 'Check the settings of step 1.' });
    await user.click(link);
    expect(document.activeElement).toBe(screen.getByLabelText(/^Width/));
    // The form stays usable for another try.
    expect(screen.getByRole('button', { name: 'Process 1 photo' })).toBeEnabled();
  });

  it('says so when the server is down, and recovers on retry', async () => {
    let up = false;
    serveOperations(() => (up ? jsonResponse(200, operationsFixture) : networkFailure()));
    const user = userEvent.setup();
    render(<App />);
    expect(await screen.findByText("Can't reach the ImageFlow server")).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Process photos' })).toBeDisabled();
    up = true;
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByRole('radio', { name: /web/i })).toBeChecked();
    expect(screen.queryByText("Can't reach the ImageFlow server")).not.toBeInTheDocument();
  });

  it('tells when the upload cannot reach the server', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    await sent();
    act(() => FakeXHR.last().fail());
    expect(await screen.findByRole('alert')).toHaveTextContent(/Can't reach the ImageFlow server/);
  });

  it('can be used with the keyboard alone', async () => {
    serveOperations();
    const user = await renderReady();
    const click = vi.spyOn(HTMLInputElement.prototype, 'click');
    screen.getByRole('button', { name: 'Choose photos' }).focus();
    await user.keyboard('{Enter}');
    expect(click).toHaveBeenCalled();
    await user.click(screen.getByRole('radio', { name: /web/i }));
    await user.keyboard('{ArrowUp}');
    expect(screen.getByRole('radio', { name: /thumbnail/i })).toBeChecked();
  });

  it('takes photos dropped on the drop zone', async () => {
    serveOperations();
    await renderReady();
    const zone = screen.getByTestId('dropzone');
    const files = [makeFile('dropped-1.jpg'), makeFile('dropped-2.png', 'image/png')];
    fireEvent.dragEnter(zone, { dataTransfer: { files, items: [] } });
    expect(screen.getByText('Drop to add them')).toBeInTheDocument();
    fireEvent.drop(zone, { dataTransfer: { files, items: [] } });
    expect(await screen.findByRole('heading', { name: /2 photos chosen/ })).toBeInTheDocument();
    expect(screen.getByText('dropped-2.png')).toBeInTheDocument();
  });

  it('can cancel an upload in progress', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    await sent();
    act(() => FakeXHR.last().progress(10, 1000));
    await user.click(screen.getByRole('button', { name: 'Cancel upload' }));
    expect(await screen.findByText('Upload cancelled. Nothing was sent to be processed.')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Process 1 photo' })).toBeEnabled();
    expect(window.location.pathname).toBe('/');
  });

  it('sends the format a new "Convert format" step shows', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'format');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    const select = screen.getByLabelText(/^Format/);
    expect(select).toHaveValue('jpeg');
    expect(within(select).getByRole('option', { selected: true })).toHaveTextContent('JPEG');
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    expect(screen.queryByText('Format is required.')).not.toBeInTheDocument();
    expect(JSON.parse(FakeXHR.last().body.get('operations'))[0]).toMatchObject({ op: 'format', format: 'jpeg' });
  });

  it('refuses a renamed ZIP before uploading, with the reason the server would give', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('photo.jpg'), makeFile('scan.jpg', 'image/jpeg', 2000, 'PK\x03\x04'), makeFile('notes.png', 'image/png', 14, 'just some text')]);
    expect(screen.getByRole('heading', { name: /1 photo chosen/ })).toBeInTheDocument();
    const warning = screen.getByText('2 files were not added').closest('.notice');
    expect(warning).toHaveTextContent('scan.jpg is not a supported image: the content is a ZIP archive (or an Office document).');
    expect(warning).toHaveTextContent('notes.png is not an image: the content is text.');
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    await sent();
    expect(FakeXHR.last().body.getAll('files').map((f) => f.name)).toEqual(['photo.jpg']);
    act(() => FakeXHR.last().respond(202, { job_id: 'f'.repeat(32), status: 'queued', images: [{ image_id: '1', filename: 'photo.jpg' }], rejected: [] }));
    // The job page says what was left out.
    expect(await screen.findByTestId('left-out')).toHaveTextContent('2 files you picked were not sent');
  });

  it('names the real format of a photo whose extension is wrong', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('really-a-png.jpg', 'image/jpeg', 2048, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])]);
    expect(screen.getByText(/2 KB · PNG/)).toBeInTheDocument();
  });

  it('says a batch limit once, naming the files it left out', async () => {
    serveOperations(() => jsonResponse(200, { ...operationsFixture, limits: { ...operationsFixture.limits, max_files_per_job: 2 } }));
    const user = await renderReady();
    await addFiles(user, ['a', 'b', 'c', 'd', 'e'].map((n) => makeFile(`${n}.jpg`)));
    const warning = screen.getByText('3 files were not added').closest('.notice');
    expect(within(warning).getAllByRole('listitem')).toHaveLength(1);
    expect(warning).toHaveTextContent('One job takes at most 2 photos. Not added: 3 files (c.jpg, d.jpg, e.jpg).');
  });

  it('shows two photos of the same name distinctly', async () => {
    serveOperations();
    const user = await renderReady();
    const first = makeFile('IMG_0001.jpg', 'image/jpeg', 1000);
    const second = makeFile('IMG_0001.jpg', 'image/jpeg', 1200);
    await addFiles(user, [first, second]);
    expect(screen.getByText('IMG_0001.jpg')).toBeInTheDocument();
    expect(screen.getByText('IMG_0001 (2).jpg')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Remove IMG_0001 (2).jpg' })).toBeInTheDocument();
  });

  it('keeps the photos and steps after leaving the page and coming back', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('kept.jpg')]);
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'rotate');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.type(screen.getByLabelText(/^Degrees/), '90');
    await user.type(screen.getByLabelText('Email address'), 'me@example.com');
    cleanup(); // the page goes away: Back, "Process more photos" or a reload

    await renderReady();
    await settle();
    expect(screen.getByText('kept.jpg')).toBeInTheDocument();
    expect(screen.getByTestId('kept-photos')).toHaveTextContent('1 photo kept from your last visit.');
    expect(screen.getByRole('radio', { name: 'Build my own steps' })).toBeChecked();
    expect(screen.getByLabelText(/^Degrees/)).toHaveValue(90);
    expect(screen.getByLabelText('Email address')).toHaveValue('me@example.com');
    await user.click(screen.getByRole('button', { name: 'Remove kept.jpg' }));
    cleanup();
    await renderReady();
    await settle();
    expect(screen.queryByText('kept.jpg')).not.toBeInTheDocument();
  });

  it('asks before leaving while photos are being uploaded', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    await sent();
    const leaving = new Event('beforeunload', { cancelable: true });
    window.dispatchEvent(leaving);
    expect(leaving.defaultPrevented).toBe(true);
    act(() => FakeXHR.last().respond(202, { job_id: 'f'.repeat(32), status: 'queued', images: [], rejected: [] }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${'f'.repeat(32)}`));
    const later = new Event('beforeunload', { cancelable: true });
    window.dispatchEvent(later);
    expect(later.defaultPrevented).toBe(false);
  });

  it('does not offer dragging on a touch screen', async () => {
    vi.stubGlobal('matchMedia', (query) => ({ matches: query === '(pointer: coarse)', addEventListener() {}, removeEventListener() {} }));
    serveOperations();
    await renderReady();
    expect(screen.queryByText(/Drag/)).not.toBeInTheDocument();
    expect(screen.getByText('Add photos from this device')).toBeInTheDocument();
  });

  it('has the server check the steps before a byte is uploaded, and puts its answer on the field', async () => {
    validateAnswer = () =>
      jsonResponse(422, {
        error: {
          code: 'invalid_operations',
          message: "step 1 (format): background 'blurple' is not a colour",
          details: [{ step: 1, index: 0, op: 'format', field: 'background', message: "'blurple' is not a colour" }],
        },
      });
    const fetch = serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'format');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.clear(screen.getByLabelText(/^Background colour/));
    await user.type(screen.getByLabelText(/^Background colour/), 'blurple');
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));

    const check = fetch.mock.calls.find(([url]) => url === '/api/v1/operations/validate');
    expect(JSON.parse(check[1].body).operations[0]).toMatchObject({ op: 'format', background: 'blurple' });
    expect(await screen.findAllByText("Background colour 'blurple' is not a colour.")).toHaveLength(1);
    expect(screen.getByRole('link', { name: 'Check the settings of step 1.' })).toBeInTheDocument();
    expect(FakeXHR.instances).toHaveLength(0); // nothing was uploaded
  });

  it('checks a preset with the server too, then uploads', async () => {
    const fetch = serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    await sent();
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(1));
    const check = fetch.mock.calls.find(([url]) => url === '/api/v1/operations/validate');
    expect(JSON.parse(check[1].body)).toEqual({ preset: 'web' });
  });

  it('saves the steps as a named preset, offers it beside the built-in ones, and sends its steps', async () => {
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('radio', { name: 'Build my own steps' }));
    await user.selectOptions(screen.getByLabelText('Add a step'), 'grayscale');
    await user.click(screen.getByRole('button', { name: 'Add step' }));
    await user.type(screen.getByLabelText('Save these steps as a preset'), 'Shop, grey');
    await user.click(screen.getByRole('button', { name: 'Save preset' }));
    expect(await screen.findByText('Saved as “Shop, grey”. It is now among the presets.')).toBeInTheDocument();
    expect(savedPresets).toEqual([expect.objectContaining({ name: 'Shop, grey', operations: [{ op: 'grayscale' }] })]);

    await user.click(screen.getByRole('radio', { name: 'Use a preset' }));
    await user.click(screen.getByRole('radio', { name: /Shop, grey/ }));
    expect(screen.getByRole('radio', { name: /web/i })).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    await sent();
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(1));
    expect(FakeXHR.last().body.get('preset')).toBeNull();
    expect(JSON.parse(FakeXHR.last().body.get('operations'))).toEqual([{ op: 'grayscale' }]);
  });

  it('deletes a saved preset', async () => {
    savedPresets = [{ name: 'Old', operations: [{ op: 'sharpen' }], created_at: 'x', updated_at: 'x' }];
    serveOperations();
    const user = await renderReady();
    await user.click(await screen.findByRole('radio', { name: /Old/ }));
    await user.click(screen.getByRole('button', { name: 'Delete “Old”' }));
    await waitFor(() => expect(screen.queryByRole('radio', { name: /Old/ })).not.toBeInTheDocument());
    expect(savedPresets).toEqual([]);
  });

  it('fills an open job file batch by file batch when the server has open jobs, and closes it', async () => {
    const jobId = 'e'.repeat(32);
    const created = [];
    openJobAnswer = (body) => {
      created.push(body);
      return jsonResponse(201, { job_id: jobId, status: 'open', links: { self: `/api/v1/jobs/${jobId}`, files: `/api/v1/jobs/${jobId}/files`, close: `/api/v1/jobs/${jobId}/close`, results_page: `/jobs/${jobId}` } });
    };
    const fetch = serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg'), makeFile('b.jpg')]);
    await user.type(screen.getByLabelText('Email address'), 'me@example.com');
    await user.click(screen.getByRole('button', { name: 'Process 2 photos' }));
    const xhr = await sent();
    expect(created).toEqual([{ open: true, preset: 'web', email: 'me@example.com' }]);
    expect(xhr.url).toBe(`/api/v1/jobs/${jobId}/files`);
    expect(xhr.body.getAll('files').map((f) => f.name)).toEqual(['a.jpg', 'b.jpg']);
    act(() => xhr.progress(500, 2000));
    expect(screen.getByLabelText('Uploading')).toHaveAttribute('value', '500');
    act(() => xhr.respond(200, { images: [{ image_id: '1', filename: 'a.jpg' }, { image_id: '2', filename: 'b.jpg' }], rejected: [] }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${jobId}`));
    expect(fetch.mock.calls.some(([url, init]) => url === `/api/v1/jobs/${jobId}/close` && init.method === 'POST')).toBe(true);
    expect(await screen.findByText(/Upload complete: 2 photos sent/)).toBeInTheDocument();
  });

  it('says it is trying again when the connection drops during an open-job upload', async () => {
    const jobId = 'e'.repeat(32);
    openJobAnswer = () => jsonResponse(201, { job_id: jobId, status: 'open', links: { files: `/api/v1/jobs/${jobId}/files`, close: `/api/v1/jobs/${jobId}/close` } });
    serveOperations();
    const user = await renderReady();
    await addFiles(user, [makeFile('a.jpg')]);
    await user.click(screen.getByRole('button', { name: 'Process 1 photo' }));
    const first = await sent();
    act(() => first.fail());
    expect(await screen.findByText(/Can't reach the ImageFlow server.*Trying again in 1 s; what was sent is kept./)).toBeInTheDocument();
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(2), { timeout: 3000 });
    act(() => FakeXHR.last().respond(200, { images: [{ image_id: '1', filename: 'a.jpg' }], rejected: [] }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${jobId}`));
  });

  it('carries on an open-job upload after a reload, sending only what the job does not hold', async () => {
    const jobId = 'e'.repeat(32);
    const links = { self: `/api/v1/jobs/${jobId}`, files: `/api/v1/jobs/${jobId}/files`, close: `/api/v1/jobs/${jobId}/close` };
    openJobAnswer = () => jsonResponse(201, { job_id: jobId, status: 'open', links });
    const fetch = serveOperations();
    const user = await renderReady();
    const files = Array.from({ length: 25 }, (_, i) => makeFile(`p${i}.jpg`));
    await addFiles(user, files);
    await user.click(screen.getByRole('button', { name: 'Process 25 photos' }));
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(2)); // batches of 20 and 5
    const [first, second] = FakeXHR.instances;
    expect(second.body.getAll('files').map((f) => f.name)).toEqual(['p20.jpg', 'p21.jpg', 'p22.jpg', 'p23.jpg', 'p24.jpg']);
    act(() => first.respond(200, { images: first.body.getAll('files').map((f, i) => ({ image_id: `a${i}`, filename: f.name })), rejected: [] }));
    await settle();
    cleanup(); // the page is closed with the second batch on its way; two of its photos landed

    FakeXHR.install();
    jobAnswer = { job_id: jobId, status: 'open', total: 22, images: [...files.slice(0, 22)].map((f, i) => ({ image_id: `x${i}`, filename: f.name, status: 'queued' })), links };
    await renderReady();
    await settle();
    expect(await screen.findByText('The upload stopped: 20 of 25 photos are in the job.')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Continue the upload' }));
    const again = await sent();
    expect(again.url).toBe(links.files);
    expect(again.body.getAll('files').map((f) => f.name)).toEqual(['p22.jpg', 'p23.jpg', 'p24.jpg']);
    act(() => again.respond(200, { images: again.body.getAll('files').map((f, i) => ({ image_id: `b${i}`, filename: f.name })), rejected: [] }));
    await waitFor(() => expect(window.location.pathname).toBe(`/jobs/${jobId}`));
    expect(fetch.mock.calls.filter(([url, init]) => url === links.close && init?.method === 'POST')).toHaveLength(1);
    expect(window.localStorage.getItem('imageflow.open-upload')).toBeNull();
  });
});

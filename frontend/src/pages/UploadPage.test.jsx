import { act, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import App from '../App.jsx';
import { FakeXHR, jsonResponse, makeFile, mockFetch, networkFailure, operationsFixture } from '../test/fakes.js';

function serveOperations(answer = () => jsonResponse(200, operationsFixture)) {
  return mockFetch((url) => {
    if (url === '/api/v1/operations') return answer();
    if (url.startsWith('/api/v1/jobs/')) return jsonResponse(200, { job_id: 'f'.repeat(32), status: 'queued', total: 1, succeeded: 0, failed: 0, images: [], links: {} });
    throw new Error(`unexpected fetch ${url}`);
  });
}

async function renderReady() {
  const user = userEvent.setup({ applyAccept: false });
  render(<App />);
  await screen.findByRole('radio', { name: /web/i });
  return user;
}

async function addFiles(user, files) {
  await user.upload(screen.getByTestId('file-input'), files);
}

beforeEach(() => {
  FakeXHR.install();
});

describe('upload page', () => {
  it('offers the server presets, web chosen, each described in words', async () => {
    serveOperations();
    await renderReady();
    expect(screen.getByRole('radio', { name: /web/i })).toBeChecked();
    expect(screen.getByRole('radio', { name: /thumbnail/i })).not.toBeChecked();
    expect(screen.getByText('Save as JPEG at quality 50')).toBeInTheDocument();
    expect(screen.getByText(/JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF, HEIC or JPEG XL · up to 25 MB each · up to 100 photos/)).toBeInTheDocument();
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
    act(() =>
      FakeXHR.last().respond(422, {
        error: {
          code: 'invalid_operations',
          message: 'operations[0] (resize): give width, height or both',
          details: [{ index: 0, op: 'resize', field: null, message: 'give width, height or both' }],
        },
      }),
    );
    const alert = await screen.findByText('The server refused the upload');
    expect(alert.closest('.notice')).toHaveTextContent('operations[0] (resize): give width, height or both');
    expect(screen.getByText('Give width, height or both.')).toBeInTheDocument();
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
    act(() => FakeXHR.last().progress(10, 1000));
    await user.click(screen.getByRole('button', { name: 'Cancel upload' }));
    expect(await screen.findByText('Upload cancelled. Nothing was sent to be processed.')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Process 1 photo' })).toBeEnabled();
    expect(window.location.pathname).toBe('/');
  });
});

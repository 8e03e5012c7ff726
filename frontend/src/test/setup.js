import '@testing-library/jest-dom/vitest';
import { cleanup } from '@testing-library/react';
import { afterEach, beforeEach, vi } from 'vitest';

// jsdom has no object URLs; the page only needs them to be distinct strings.
let urlCount = 0;
beforeEach(() => {
  URL.createObjectURL = vi.fn(() => `blob:test/${++urlCount}`);
  URL.revokeObjectURL = vi.fn();
  window.history.replaceState(null, '', '/');
});

afterEach(() => {
  cleanup();
});

import '@testing-library/jest-dom/vitest';
import { cleanup } from '@testing-library/react';
import { afterEach, beforeEach, expect, vi } from 'vitest';
import { memoryPhotoStore, setPhotoStore } from '../lib/savedWork.js';

// jsdom has no object URLs; the page only needs them to be distinct strings.
let urlCount = 0;
let consoleErrors = [];

beforeEach(() => {
  URL.createObjectURL = vi.fn(() => `blob:test/${++urlCount}`);
  URL.revokeObjectURL = vi.fn();
  window.history.replaceState(null, '', '/');
  // Each test starts with nothing saved from an earlier one.
  setPhotoStore(memoryPhotoStore());
  window.localStorage.clear();
  // A React warning (bad key, act(), invalid DOM) is a bug: fail the test that caused it.
  consoleErrors = [];
  vi.spyOn(console, 'error').mockImplementation((...args) => consoleErrors.push(args.map(String).join(' ')));
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  expect(consoleErrors, 'console.error was called').toEqual([]);
});

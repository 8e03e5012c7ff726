// A two-route client-side router (the upload page and /jobs/<job_id>); a library would be
// more than this page needs. The server answers every route with index.html.
import { useEffect, useState } from 'react';

const listeners = new Set();

function currentLocation() {
  return { path: window.location.pathname, state: window.history.state };
}

/** Go to `path` without reloading the page; `state` rides along (e.g. the upload's answer). */
export function navigate(path, state = null, { replace = false } = {}) {
  if (replace) window.history.replaceState(state, '', path);
  else window.history.pushState(state, '', path);
  window.scrollTo?.(0, 0);
  listeners.forEach((listener) => listener());
}

/** The current path and history state, updated on navigate() and the browser's back/forward. */
export function useLocation() {
  const [location, setLocation] = useState(currentLocation);
  useEffect(() => {
    const update = () => setLocation(currentLocation());
    listeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return location;
}

/** Which page a path shows: {name: 'upload'} | {name: 'job', jobId} | {name: 'not-found'}. */
export function matchRoute(path) {
  const trimmed = path.replace(/\/+$/, '') || '/';
  if (trimmed === '/' || trimmed === '/index.html') return { name: 'upload' };
  if (trimmed === '/jobs') return { name: 'jobs' };
  const job = /^\/jobs\/([^/]+)$/.exec(trimmed);
  if (job) {
    try {
      return { name: 'job', jobId: decodeURIComponent(job[1]) };
    } catch {
      return { name: 'job', jobId: job[1] }; // a malformed %-escape: the server will not know it
    }
  }
  return { name: 'not-found' };
}

/** Clicks on in-app links navigate without a reload; modified clicks keep the browser's behaviour. */
export function linkHandler(path, state) {
  return (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(path, state);
  };
}

import { useEffect, useRef } from 'react';
import JobPage from './pages/JobPage.jsx';
import JobsPage from './pages/JobsPage.jsx';
import UploadPage from './pages/UploadPage.jsx';
import { linkHandler, matchRoute, useLocation } from './lib/router.js';

function NotFoundPage() {
  return (
    <div className="page">
      <h1 tabIndex={-1} id="page-title">This page doesn't exist</h1>
      <p>
        <a href="/" onClick={linkHandler('/')}>
          Go to the upload page
        </a>
      </p>
    </div>
  );
}

/** The page frame and the two routes: / (upload) and /jobs/<job_id> (progress and results). */
export default function App() {
  const { path, state } = useLocation();
  const route = matchRoute(path);
  const firstRender = useRef(true);

  // After an in-app navigation, move focus to the new page's heading so screen reader
  // and keyboard users start at the top of the new content.
  useEffect(() => {
    if (firstRender.current) {
      firstRender.current = false;
      return;
    }
    document.getElementById('page-title')?.focus();
  }, [path]);

  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="site-header">
        <a href="/" className="brand" onClick={linkHandler('/')}>
          <img src="/favicon.svg" alt="" width="28" height="28" />
          ImageFlow
        </a>
        <span className="tagline">Batch photo processing</span>
        <a href="/jobs" className="header-link" onClick={linkHandler('/jobs')}>
          Your jobs
        </a>
      </header>
      <main id="main">
        {route.name === 'upload' && <UploadPage />}
        {route.name === 'job' && <JobPage key={route.jobId} jobId={route.jobId} submitted={state?.submitted} />}
        {route.name === 'jobs' && <JobsPage />}
        {route.name === 'not-found' && <NotFoundPage />}
      </main>
      <footer className="site-footer">
        <p>ImageFlow · resize, convert and compress photos in batches.</p>
      </footer>
    </>
  );
}

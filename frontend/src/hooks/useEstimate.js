import { useCallback, useEffect, useRef, useState } from 'react';
import { estimateJob } from '../lib/api.js';
import { REQUEST_MARGIN } from '../lib/openJobUpload.js';

/**
 * The photos an estimate can send in one request (at most `max_request_bytes` and
 * `max_files_per_job`), in order: all of them, or the first ones that fit.
 */
export function estimateSample(files, limits) {
  const maxBytes = limits.max_request_bytes ? limits.max_request_bytes - REQUEST_MARGIN : Infinity;
  const maxFiles = limits.max_files_per_job || Infinity;
  const sample = [];
  let bytes = 0;
  for (const file of files) {
    if (sample.length >= maxFiles || bytes + file.size > maxBytes) break;
    sample.push(file);
    bytes += file.size;
  }
  return sample;
}

/**
 * What the job would do, asked before it is sent (POST /api/v1/jobs with estimate=true):
 * `{estimate: {status: idle|running|done|error, answer, error, signature, sent, total,
 * scale}, run({files, request, signature, limits}), clear()}`. `signature` says which photos
 * and steps the answer is for; `scale` (>= 1) is how much larger the whole selection is than
 * the photos that were measured.
 */
export default function useEstimate() {
  const [estimate, setEstimate] = useState({ status: 'idle' });
  const abortRef = useRef(null);
  useEffect(() => () => abortRef.current?.abort(), []);

  const run = useCallback(async ({ files, request, signature, limits }) => {
    abortRef.current?.abort();
    const controller = new AbortController();
    abortRef.current = controller;
    const sample = estimateSample(files, limits);
    const bytesOf = (list) => list.reduce((sum, file) => sum + file.size, 0);
    const scale = sample.length ? bytesOf(files) / Math.max(1, bytesOf(sample)) : 1;
    if (!sample.length) {
      const error = new Error('the first photo alone is larger than the server takes in one request.');
      setEstimate({ status: 'error', error, signature, sent: 0, total: files.length });
      return;
    }
    setEstimate({ status: 'running', signature, sent: sample.length, total: files.length });
    try {
      const answer = await estimateJob({ files: sample, ...request }, { signal: controller.signal });
      setEstimate({ status: 'done', answer, signature, sent: sample.length, total: files.length, scale });
    } catch (error) {
      if (error.name === 'AbortError') return;
      setEstimate({ status: 'error', error, signature, sent: sample.length, total: files.length });
    } finally {
      if (abortRef.current === controller) abortRef.current = null;
    }
  }, []);

  const clear = useCallback(() => {
    abortRef.current?.abort();
    setEstimate({ status: 'idle' });
  }, []);

  return { estimate, run, clear };
}

// sharp as a peer of bench/peers.py: reads jobs, one JSON object a line, on stdin, runs
// each one and writes one JSON line per job on stdout. Started by bench/peers.py, pinned to
// one core, with UV_THREADPOOL_SIZE=1 and IMAGEFLOW_SHARP_DIR = the folder `npm ci` installed
// bench/sharp/package-lock.json into.
//
//   job:    {"input": path, "output": path, "width": 1024, "height": 1024, "fit": "inside",
//            "format": "jpeg"|"webp"|"avif"|"jxl"|"png", "quality": 1-100, "effort": int|null,
//            "background": "#ffffff", "seconds": 2, "min_runs": 3, "warmup": path|null}
//   answer: {"impl": "sharp", "times": [CPU seconds per image], "output_bytes": n,
//            "idle_rss_mb": x, "peak_above_idle_mb": y}
//           or {"unsupported": why} (a format this build of sharp cannot write)
//           or {"error": what was wrong}
//
//   node worker.js --parse    only checks and normalises the jobs (answers {"job": ...}),
//                             without loading sharp: what the tests exercise.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

const FORMATS = ['jpeg', 'webp', 'avif', 'jxl', 'png'];
const FITS = ['inside', 'cover', 'contain', 'fill', 'outside'];

function parseJob(line) {
  let job;
  try {
    job = JSON.parse(line);
  } catch (err) {
    throw new Error(`a job is one JSON object a line: ${err.message}`);
  }
  if (job === null || typeof job !== 'object' || Array.isArray(job)) {
    throw new Error('a job is a JSON object');
  }
  const need = (name, check, what) => {
    if (!(name in job)) throw new Error(`the job has no "${name}"`);
    if (!check(job[name])) throw new Error(`"${name}" must be ${what}, not ${JSON.stringify(job[name])}`);
    return job[name];
  };
  const isPositiveInt = (v) => Number.isInteger(v) && v > 0;
  const isText = (v) => typeof v === 'string' && v.length > 0;
  const effort = job.effort === undefined ? null : job.effort;
  if (effort !== null && !(Number.isInteger(effort) && effort >= 0 && effort <= 9)) {
    throw new Error(`"effort" must be an integer 0-9 or null, not ${JSON.stringify(effort)}`);
  }
  const warmup = job.warmup === undefined ? null : job.warmup;
  if (warmup !== null && !isText(warmup)) throw new Error('"warmup" must be a path or null');
  return {
    input: need('input', isText, 'a path'),
    output: need('output', isText, 'a path'),
    width: need('width', isPositiveInt, 'a positive integer'),
    height: need('height', isPositiveInt, 'a positive integer'),
    fit: job.fit === undefined ? 'inside' : need('fit', (v) => FITS.includes(v), `one of ${FITS.join(', ')}`),
    format: need('format', (v) => FORMATS.includes(v), `one of ${FORMATS.join(', ')}`),
    quality: need('quality', (v) => Number.isInteger(v) && v >= 1 && v <= 100, 'an integer 1-100'),
    effort,
    background: job.background === undefined ? '#ffffff' : need('background', isText, 'a colour'),
    seconds: job.seconds === undefined ? 2 : need('seconds', (v) => typeof v === 'number' && v >= 0, 'a number >= 0'),
    min_runs: job.min_runs === undefined ? 3 : need('min_runs', isPositiveInt, 'a positive integer'),
    warmup,
  };
}

function statusKib(field) {
  for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
    if (line.startsWith(field + ':')) return parseInt(line.split(/\s+/)[1], 10);
  }
  return 0;
}

function resetPeak() {
  fs.writeFileSync('/proc/self/clear_refs', '5');   // VmHWM := VmRSS
}

function cpuSeconds() {
  // getrusage(RUSAGE_SELF): every thread of the process, libvips' included
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function loadSharp() {
  const dir = process.env.IMAGEFLOW_SHARP_DIR;
  if (!dir) throw new Error('IMAGEFLOW_SHARP_DIR is not set (the folder npm ci installed sharp into)');
  const sharp = require(path.join(dir, 'node_modules', 'sharp'));
  sharp.concurrency(1);      // one libvips thread
  sharp.cache(false);        // no operation cache: every image does the whole work
  return sharp;
}

function unsupported(sharp, job) {
  // AVIF is written by libvips' heif saver (AV1), listed as sharp.format.heif
  const format = sharp.format[job.format === 'avif' ? 'heif' : job.format];
  if (!format || !format.output || !format.output.buffer) {
    return `sharp ${sharp.versions.sharp} with libvips ${sharp.versions.vips} cannot write ${job.format}` +
      (job.format === 'jxl' ? ' (its prebuilt libvips has no JPEG XL encoder)' : '');
  }
  return null;
}

async function once(sharp, data, job) {
  let image = sharp(data).rotate()     // EXIF orientation, as every other implementation
    .resize(job.width, job.height, { fit: job.fit, withoutEnlargement: true });
  const options = { quality: job.quality };
  if (job.effort !== null) options.effort = job.effort;
  // 4:2:0 as libvips (pyvips), Pillow and the engine write AVIF at this quality; sharp's own
  // default is 4:4:4, larger files for a higher PSNR, not the same output
  if (job.format === 'avif') options.chromaSubsampling = '4:2:0';
  if (job.format === 'jpeg') image = image.flatten({ background: job.background }).jpeg(options);
  else image = image[job.format](options);
  return image.toBuffer();
}

async function run(sharp, job) {
  const why = unsupported(sharp, job);
  if (why) return { unsupported: why };
  const data = fs.readFileSync(job.input);
  resetPeak();
  const idle = statusKib('VmRSS');
  if (job.warmup) await once(sharp, fs.readFileSync(job.warmup), job);   // first calls set up what they need
  const output = await once(sharp, data, job);   // the first real image counts for memory, not time
  fs.writeFileSync(job.output, output);
  const times = [];
  const deadline = process.hrtime.bigint() + BigInt(Math.round(job.seconds * 1e9));
  while (times.length < job.min_runs || process.hrtime.bigint() < deadline) {
    const cpu = cpuSeconds();
    await once(sharp, data, job);
    times.push(cpuSeconds() - cpu);
  }
  return {
    impl: 'sharp', times, output_bytes: output.length, idle_rss_mb: idle / 1024,
    peak_above_idle_mb: (statusKib('VmHWM') - idle) / 1024,
  };
}

async function main() {
  const parseOnly = process.argv.includes('--parse');
  let sharp = null;
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let answer;
    try {
      const job = parseJob(line);
      if (parseOnly) {
        answer = { job };
      } else {
        sharp = sharp || loadSharp();
        answer = await run(sharp, job);
      }
    } catch (err) {
      answer = { error: err.message };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});

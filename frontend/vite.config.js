import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// In development `npm run dev` proxies the API to a running image-handler
// (./scripts.sh up), so the page and the API share one origin as in production.
const apiTarget = process.env.IMAGEFLOW_API || 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
  },
  server: {
    proxy: {
      '/api': apiTarget,
    },
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.js'],
    include: ['src/**/*.test.{js,jsx}'],
    restoreMocks: true,
    // The machines running CI are shared and slow; a user-event heavy test can take seconds, and
    // with other work on both cores (the suite twice with two CPU burners and more) one took over 20 s.
    // A safety net against a hang, not a measure of speed.
    testTimeout: 60000,
  },
});

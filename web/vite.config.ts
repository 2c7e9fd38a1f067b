import { defineConfig } from "vite";

// Preact through esbuild's automatic JSX runtime: no Babel, no plugin.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    target: "es2022",
    // Chromium, Firefox and Safari all support <link rel=modulepreload>; no polyfill.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0, // no data: URLs (the Content-Security-Policy keeps img-src tight)
    reportCompressedSize: false,
  },
  server: {
    // `npm run dev`: the API of a running stack (./stack up) behind Vite's dev server.
    proxy: { "/v1": "http://127.0.0.1:8080", "/app-config.json": "http://127.0.0.1:8080" },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});

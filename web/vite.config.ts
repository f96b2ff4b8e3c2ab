import { defineConfig } from "vitest/config";
import preact from "@preact/preset-vite";

// The app is served by `tidings serve` from web/dist (embedded at build time). For
// development, `npm run dev` proxies the API to a running `tidings serve` on :8080.
const api = process.env.TIDINGS_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [preact()],
  build: {
    target: "es2022",
    // No inline script or style anywhere: the server's CSP forbids them.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  server: {
    proxy: {
      "/jmap": { target: api, ws: true },
      "/auth": api,
      "/web": api,
      "/.well-known": api,
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});

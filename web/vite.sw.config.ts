import { defineConfig } from "vite";

// The service worker, built after the app (`npm run build`) into dist/sw.js: one classic
// script with nothing imported at run time (module service workers are not everywhere
// yet), at the root so that its scope is the whole app.
export default defineConfig({
  publicDir: false,
  build: {
    target: "es2022",
    emptyOutDir: false,
    sourcemap: false,
    lib: { entry: "src/sw.ts", formats: ["iife"], name: "tidingsSw", fileName: () => "sw.js" },
  },
});

// Builds the page entries into ../static_build/frontend with a manifest that Django's
// {% vite_entry %} tag reads; Django (whitenoise) serves them under /static/frontend/.
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/static/frontend/",
  build: {
    outDir: resolve(__dirname, "../static_build/frontend"),
    emptyOutDir: true,
    manifest: true,
    sourcemap: true,
    rollupOptions: {
      input: {
        main: resolve(__dirname, "src/main.ts"),
        analytics: resolve(__dirname, "src/analytics.ts"),
        project: resolve(__dirname, "src/project.ts"),
        scene: resolve(__dirname, "src/scene.ts"),
      },
    },
  },
});

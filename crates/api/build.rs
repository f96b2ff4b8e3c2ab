//! Embeds the web client: every file of `web/dist` (built by `npm run build` in
//! `web/`, which `scripts/test` and `scripts/demo` do first) goes into the binary with a
//! gzip and a brotli copy made here, once, so serving costs no compression.
//!
//! Without `web/dist` (a clean clone where only cargo ran) the table is empty and `/`
//! says how to build the client; nothing else depends on it.

use std::io::Write;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn mime_of(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let web = manifest.join("../../web");
    let dist = web.join("dist");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut table = String::from("pub(crate) static ASSETS: &[Asset] = &[\n");
    if dist.join("index.html").is_file() {
        println!("cargo::rerun-if-changed={}", dist.display());
        let mut list = Vec::new();
        files(&dist, &mut list)?;
        list.sort();
        for (i, f) in list.iter().enumerate() {
            let data = std::fs::read(f)?;
            let rel = f.strip_prefix(&dist)?.to_string_lossy().replace('\\', "/");
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&data)?;
            let gz = gz.finish()?;
            let mut br = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut br, 4096, 11, 22);
                w.write_all(&data)?;
            }
            let (gzp, brp) = (
                out.join(format!("asset{i}.gz")),
                out.join(format!("asset{i}.br")),
            );
            std::fs::write(&gzp, &gz)?;
            std::fs::write(&brp, &br)?;
            table.push_str(&format!(
                "    Asset {{ path: {:?}, mime: {:?}, raw: include_bytes!({:?}), gzip: include_bytes!({:?}), brotli: include_bytes!({:?}) }},\n",
                format!("/{rel}"),
                mime_of(f),
                f.display().to_string(),
                gzp.display().to_string(),
                brp.display().to_string(),
            ));
        }
    } else {
        // Watch the folder, so that building the client later re-runs this script.
        println!(
            "cargo::rerun-if-changed={}",
            web.join("package.json").display()
        );
        println!("cargo::rerun-if-changed={}", web.display());
        if std::env::var("PROFILE").as_deref() == Ok("release") {
            println!(
                "cargo::warning=web/dist is missing: the web client is not embedded (run `npm ci && npm run build` in web/)"
            );
        }
    }
    table.push_str("];\n");
    std::fs::write(out.join("web_assets.rs"), table)?;
    Ok(())
}

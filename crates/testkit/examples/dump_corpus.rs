//! Writes the demo corpus as .eml files into a directory (default
//! ./corpus-dump) for inspection.
use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "corpus-dump".to_owned());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    for (i, m) in testkit::corpus::demo_corpus().iter().enumerate() {
        let name = format!("{dir}/{i:04}-{}.eml", m.folder.replace('/', "_"));
        std::fs::write(&name, &m.raw).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

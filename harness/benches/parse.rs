//! Micro-benchmark of scenario parsing: the whole KeyValue corpus, file by file. Run with
//! `cargo bench -p prism-conform`.

use criterion::{Criterion, criterion_group, criterion_main};
use prism_conform::scenario::load::find_files;
use prism_conform::scenario::parse_scenario;
use std::hint::black_box;
use std::path::Path;

fn corpus(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files: Vec<_> = find_files(&root)
        .unwrap()
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect();
    c.bench_function(&format!("parse the corpus ({} files)", files.len()), |b| {
        b.iter(|| {
            for (path, text) in &files {
                black_box(parse_scenario(text, path).unwrap());
            }
        })
    });
}

criterion_group!(benches, corpus);
criterion_main!(benches);

//! Micro-benchmarks of the proxy's hot pieces: namespace resolution (router), request validation, and
//! the memstore adapter's Get and Set. Run with `cargo bench -p prism-runtime`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use prism_runtime::backends::memstore::MemStore;
use prism_runtime::config::ProxyConfig;
use prism_runtime::patterns::keyvalue::store::KvBasic;
use prism_runtime::router::Router;
use std::hint::black_box;
use std::path::Path;

fn routing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut yaml =
        String::from("auth: { mode: none }\nbackends: { m: { type: memstore } }\nnamespaces:\n");
    for i in 0..100 {
        yaml.push_str(&format!("  ns{i}: {{ pattern: keyvalue, backend: m }}\n"));
    }
    let config = ProxyConfig::parse(&yaml, Path::new("bench.yaml")).unwrap();
    let router = runtime.block_on(Router::from_config(&config)).unwrap();
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(prism_proto::NAMESPACE_HEADER, "ns57".parse().unwrap());
    c.bench_function("router/resolve (100 namespaces)", |b| {
        b.iter(|| router.resolve(black_box(&metadata)).unwrap())
    });
}

fn memstore(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MemStore::new();
    let value = Bytes::from(vec![7u8; 256]);
    runtime.block_on(async {
        for i in 0..10_000 {
            store
                .set("bench", &format!("key-{i}"), value.clone(), None)
                .await
                .unwrap();
        }
    });
    c.bench_function("memstore/get (10k keys, 256 B)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % 10_000;
            runtime
                .block_on(store.get("bench", &format!("key-{i}")))
                .unwrap()
        })
    });
    c.bench_function("memstore/set (10k keys, 256 B)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % 10_000;
            runtime
                .block_on(store.set("bench", &format!("key-{i}"), value.clone(), None))
                .unwrap()
        })
    });
}

criterion_group!(benches, routing, memstore);
criterion_main!(benches);

//! What a load user calls: the same operations through the proxy over gRPC, or straight on the
//! backend adapter in-process (the `--baseline direct` run), so the difference is the proxy's cost.

use super::profile::{LoadOp, LoadProfile, MixEntry};
use super::stats::Recorder;
use bytes::Bytes;
use prism_proto::client::KeyValue;
use prism_proto::keyvalue::v1 as pb;
use prism_runtime::patterns::keyvalue::store::{Condition, KvStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A boxed future, keeping the driver object-safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One call's outcome: Ok, or the status code name.
pub type CallResult = Result<(), String>;

/// The operations a load user needs.
pub trait Driver: Send + Sync {
    /// Get; returns the version when found.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, String>>;
    /// Set.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        if_version: Option<u64>,
    ) -> BoxFuture<'a, CallResult>;
    /// Delete.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CallResult>;
    /// Exists.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CallResult>;
    /// One Scan page starting after `after`.
    fn scan<'a>(&'a self, prefix: &'a str, after: &'a str, page: u32) -> BoxFuture<'a, CallResult>;
}

fn code(s: tonic::Status) -> String {
    crate::scenario::code::StatusCode::from(s.code())
        .name()
        .to_string()
}

/// Calls through the proxy, over one or more HTTP/2 connections taken in turn.
pub struct GrpcDriver {
    clients: Vec<KeyValue>,
    next: AtomicU64,
}

impl GrpcDriver {
    /// A driver over `clients` (each on the load namespace, with its token; one per connection).
    ///
    /// # Panics
    /// When `clients` is empty.
    pub fn new(clients: Vec<KeyValue>) -> Self {
        assert!(!clients.is_empty(), "a GrpcDriver needs a client");
        Self {
            clients,
            next: AtomicU64::new(0),
        }
    }

    /// The next connection's client (a cheap handle clone).
    fn kv(&self) -> KeyValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        self.clients[n % self.clients.len()].clone()
    }
}

impl Driver for GrpcDriver {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, String>> {
        Box::pin(async move {
            let r = self
                .kv()
                .get(pb::GetRequest { key: key.into() })
                .await
                .map_err(code)?
                .into_inner();
            Ok(r.found.then_some(r.version))
        })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        if_version: Option<u64>,
    ) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            let req = pb::SetRequest {
                key: key.into(),
                value,
                if_version,
                ..Default::default()
            };
            self.kv().set(req).await.map(|_| ()).map_err(code)
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.kv()
                .delete(pb::DeleteRequest { key: key.into() })
                .await
                .map(|_| ())
                .map_err(code)
        })
    }
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.kv()
                .exists(pb::ExistsRequest { key: key.into() })
                .await
                .map(|_| ())
                .map_err(code)
        })
    }
    fn scan<'a>(&'a self, prefix: &'a str, after: &'a str, page: u32) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            let cursor = cursor_after(after);
            let req = pb::ScanRequest {
                prefix: prefix.into(),
                cursor,
                limit: page,
                keys_only: false,
            };
            self.kv().scan(req).await.map(|_| ()).map_err(code)
        })
    }
}

/// The proxy's cursor for "after this key" (base64url of the key, as the proxy encodes it).
fn cursor_after(after: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.as_bytes())
}

/// Calls the adapter in-process, without gRPC.
pub struct DirectDriver {
    /// The adapter.
    pub store: Arc<dyn KvStore>,
    /// Namespace.
    pub ns: String,
}

fn store_code(e: prism_runtime::patterns::keyvalue::store::StoreError) -> String {
    use prism_runtime::patterns::keyvalue::store::StoreError as E;
    match e {
        E::AlreadyExists { .. } => "ALREADY_EXISTS",
        E::VersionMismatch { .. } => "ABORTED",
        E::TooLarge { .. } | E::OverBackendLimit(_) => "RESOURCE_EXHAUSTED",
        E::Unavailable(_) => "UNAVAILABLE",
        E::Internal(_) => "INTERNAL",
    }
    .to_string()
}

impl Driver for DirectDriver {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, String>> {
        Box::pin(async move {
            Ok(self
                .store
                .get(&self.ns, key)
                .await
                .map_err(store_code)?
                .map(|e| e.version))
        })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        if_version: Option<u64>,
    ) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            match (if_version, self.store.cas()) {
                (Some(v), Some(cas)) => cas
                    .set_if(&self.ns, key, value, None, Condition::IfVersion(v))
                    .await
                    .map(|_| ())
                    .map_err(store_code),
                _ => self
                    .store
                    .set(&self.ns, key, value, None)
                    .await
                    .map(|_| ())
                    .map_err(store_code),
            }
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.store
                .delete(&self.ns, key)
                .await
                .map(|_| ())
                .map_err(store_code)
        })
    }
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.store
                .exists(&self.ns, key)
                .await
                .map(|_| ())
                .map_err(store_code)
        })
    }
    fn scan<'a>(&'a self, prefix: &'a str, after: &'a str, page: u32) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            let Some(scan) = self.store.scan() else {
                return Err("UNIMPLEMENTED".into());
            };
            scan.scan(
                &self.ns,
                prefix,
                Some(after),
                page as usize + 1,
                5 * 1024 * 1024,
                false,
            )
            .await
            .map(|_| ())
            .map_err(store_code)
        })
    }
}

/// What every user of one run shares: the profile's mix, key space, values, pacing and recorder.
pub struct Workload {
    /// Key prefix of this run.
    pub prefix: String,
    mix: Vec<MixEntry>,
    total_weight: u32,
    keys: usize,
    values: Bytes,
    sizes: (usize, usize),
    pace: Option<(std::sync::OnceLock<Instant>, Duration, AtomicU64)>,
    seed: AtomicU64,
    /// Where calls are recorded.
    pub recorder: Recorder,
}

impl Workload {
    /// The workload of `profile` under `prefix`; `rate` overrides the profile's target rate.
    pub fn new(profile: &LoadProfile, prefix: String, rate: Option<f64>) -> Self {
        let sizes = profile.values.range();
        let values = Bytes::from(crate::scenario::value::blob(sizes.1.max(1), 42));
        let pace = rate.or(profile.rate).filter(|r| *r > 0.0).map(|r| {
            (
                std::sync::OnceLock::new(),
                Duration::from_secs_f64(1.0 / r),
                AtomicU64::new(0),
            )
        });
        Self {
            prefix,
            total_weight: profile.mix.iter().map(|m| m.weight).sum(),
            mix: profile.mix.clone(),
            keys: profile.keys.count,
            values,
            sizes,
            pace,
            seed: AtomicU64::new(0x5eed),
            recorder: Recorder::new(),
        }
    }

    fn next_random(&self) -> u64 {
        // SplitMix64 over a shared counter: cheap, uncorrelated enough for picking keys and ops.
        let mut z = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The key with index `i`.
    pub fn key(&self, i: usize) -> String {
        format!("{}k{i:08}", self.prefix)
    }

    fn value(&self) -> Bytes {
        let (lo, hi) = self.sizes;
        let len = if hi > lo {
            lo + (self.next_random() as usize % (hi - lo + 1))
        } else {
            lo
        };
        self.values.slice(..len.min(self.values.len()))
    }

    /// Writes every key once (untimed), so reads hit.
    pub async fn preload(&self, driver: &dyn Driver) -> Result<(), String> {
        for i in 0..self.keys {
            driver.set(&self.key(i), self.value(), None).await?;
        }
        Ok(())
    }

    async fn wait_turn(&self) {
        if let Some((start, interval, n)) = &self.pace {
            // The schedule starts with the first measured call, not when the workload was built
            // (preloading comes in between).
            let start = *start.get_or_init(Instant::now);
            let slot = n.fetch_add(1, Ordering::Relaxed);
            let due = start + interval.mul_f64(slot as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// Picks one operation by weight, runs it through `driver`, records it, and returns it with
    /// its latency and outcome (for goose).
    pub async fn step(&self, driver: &dyn Driver) -> (LoadOp, Duration, CallResult) {
        self.wait_turn().await;
        let mut pick = (self.next_random() % u64::from(self.total_weight.max(1))) as u32;
        let entry = self
            .mix
            .iter()
            .find(|m| {
                if pick < m.weight {
                    true
                } else {
                    pick -= m.weight;
                    false
                }
            })
            .copied()
            .unwrap_or(self.mix[0]);
        let key = self.key(self.next_random() as usize % self.keys);
        let started = Instant::now();
        let outcome = match entry.op {
            LoadOp::Get => driver.get(&key).await.map(|_| ()),
            LoadOp::Set => driver.set(&key, self.value(), None).await,
            LoadOp::Delete => driver.delete(&key).await,
            LoadOp::Exists => driver.exists(&key).await,
            LoadOp::Scan => driver.scan(&self.prefix, &key, entry.page).await,
            LoadOp::Cas => match driver.get(&key).await {
                Ok(version) => match driver
                    .set(&key, self.value(), Some(version.unwrap_or(0)))
                    .await
                {
                    Err(c) if c == "ABORTED" => Ok(()), // a lost race is the expected outcome of CAS
                    other => other,
                },
                Err(e) => Err(e),
            },
        };
        let latency = started.elapsed();
        self.recorder.record(entry.op, latency, outcome.clone());
        (entry.op, latency, outcome)
    }
}

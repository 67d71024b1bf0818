//! What a load user calls: the same operations through the proxy over gRPC, or straight on the
//! backend adapter in-process (the `--baseline direct` run), so the difference is the proxy's cost.

use super::profile::{LoadOp, LoadProfile, MixEntry};
use super::stats::Recorder;
use super::wire::Wire;
use bytes::Bytes;
use prism_proto::keyvalue::v1 as pb;
use prism_runtime::patterns::keyvalue::store::{Condition, KvStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A boxed future, keeping the driver object-safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One call's outcome: Ok, or the status code name.
pub type CallResult = Result<(), String>;

/// The operations a load user needs; each user owns its driver (no shared state on the hot path).
pub trait Driver: Send {
    /// Whether its answers come over a connection, several in one read (the user then yields
    /// after each call, so every answer of a read is stamped before the next calls go out).
    fn remote(&self) -> bool {
        false
    }
    /// Get; returns the version when found.
    fn get<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, String>>;
    /// Set.
    fn set<'a>(
        &'a mut self,
        key: &'a str,
        value: Bytes,
        if_version: Option<u64>,
    ) -> BoxFuture<'a, CallResult>;
    /// Delete.
    fn delete<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, CallResult>;
    /// Exists.
    fn exists<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, CallResult>;
    /// One Scan page starting after `after`.
    fn scan<'a>(
        &'a mut self,
        prefix: &'a str,
        after: &'a str,
        page: u32,
    ) -> BoxFuture<'a, CallResult>;
}

/// The KeyValue methods' paths.
mod path {
    pub const GET: &str = "/prism.keyvalue.v1.KeyValue/Get";
    pub const SET: &str = "/prism.keyvalue.v1.KeyValue/Set";
    pub const DELETE: &str = "/prism.keyvalue.v1.KeyValue/Delete";
    pub const EXISTS: &str = "/prism.keyvalue.v1.KeyValue/Exists";
    pub const SCAN: &str = "/prism.keyvalue.v1.KeyValue/Scan";
}

/// Calls through the proxy on one HTTP/2 connection (one user's handle on it).
pub struct GrpcDriver {
    /// The connection.
    pub wire: Wire,
}

impl Driver for GrpcDriver {
    fn remote(&self) -> bool {
        true
    }
    fn get<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, String>> {
        Box::pin(async move {
            let r: pb::GetResponse = self
                .wire
                .unary(path::GET, &pb::GetRequest { key: key.into() })
                .await?;
            Ok(r.found.then_some(r.version))
        })
    }
    fn set<'a>(
        &'a mut self,
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
            self.wire
                .unary::<_, pb::SetResponse>(path::SET, &req)
                .await
                .map(|_| ())
        })
    }
    fn delete<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.wire
                .unary::<_, pb::DeleteResponse>(
                    path::DELETE,
                    &pb::DeleteRequest { key: key.into() },
                )
                .await
                .map(|_| ())
        })
    }
    fn exists<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.wire
                .unary::<_, pb::ExistsResponse>(
                    path::EXISTS,
                    &pb::ExistsRequest { key: key.into() },
                )
                .await
                .map(|_| ())
        })
    }
    fn scan<'a>(
        &'a mut self,
        prefix: &'a str,
        after: &'a str,
        page: u32,
    ) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            let req = pb::ScanRequest {
                prefix: prefix.into(),
                cursor: cursor_after(after),
                limit: page,
                keys_only: false,
            };
            self.wire
                .unary::<_, pb::ScanResponse>(path::SCAN, &req)
                .await
                .map(|_| ())
        })
    }
}

/// The proxy's cursor for "after this key" (base64url of the key, as the proxy encodes it).
fn cursor_after(after: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.as_bytes())
}

/// Calls the adapter in-process, without gRPC.
#[derive(Clone)]
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
    fn get<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, String>> {
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
        &'a mut self,
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
    fn delete<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.store
                .delete(&self.ns, key)
                .await
                .map(|_| ())
                .map_err(store_code)
        })
    }
    fn exists<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, CallResult> {
        Box::pin(async move {
            self.store
                .exists(&self.ns, key)
                .await
                .map(|_| ())
                .map_err(store_code)
        })
    }
    fn scan<'a>(
        &'a mut self,
        prefix: &'a str,
        after: &'a str,
        page: u32,
    ) -> BoxFuture<'a, CallResult> {
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

/// What every user of one run shares: the profile's mix, key space, values and pacing. Each user
/// keeps its own random state and records into its thread's recorder.
pub struct Workload {
    /// Key prefix of this run.
    pub prefix: String,
    mix: Vec<MixEntry>,
    total_weight: u32,
    keys: Vec<String>,
    values: Bytes,
    sizes: (usize, usize),
    pace: Option<(std::sync::OnceLock<Instant>, Duration, AtomicU64)>,
}

/// One operation to run: its mix entry, key and (for writes) value.
#[derive(Clone, Debug)]
pub struct Pick<'a> {
    /// The mix entry (operation and scan page).
    pub entry: MixEntry,
    /// The key.
    pub key: &'a str,
    /// The value, for Set and Cas.
    pub value: Option<Bytes>,
}

/// A user's random state: SplitMix64, cheap and uncorrelated enough for picking keys and ops.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The state of user `n`.
    pub fn for_user(n: usize) -> Self {
        Self(0x5eed ^ (n as u64).wrapping_mul(0xA24B_AED4_963E_E407))
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
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
            keys: (0..profile.keys.count.max(1))
                .map(|i| format!("{prefix}k{i:08}"))
                .collect(),
            prefix,
            total_weight: profile.mix.iter().map(|m| m.weight).sum(),
            mix: profile.mix.clone(),
            values,
            sizes,
            pace,
        }
    }

    /// The key with index `i` (made once, when the workload is).
    pub fn key(&self, i: usize) -> &str {
        &self.keys[i % self.keys.len()]
    }

    fn value(&self, rng: &mut Rng) -> Bytes {
        let (lo, hi) = self.sizes;
        let len = if hi > lo {
            lo + (rng.next() as usize % (hi - lo + 1))
        } else {
            lo
        };
        self.values.slice(..len.min(self.values.len()))
    }

    /// Writes every key once (untimed), so reads hit.
    pub async fn preload(&self, driver: &mut dyn Driver) -> Result<(), String> {
        let mut rng = Rng::for_user(usize::MAX);
        for key in &self.keys {
            driver.set(key, self.value(&mut rng), None).await?;
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

    /// Picks the next operation by weight: its mix entry, key and value.
    pub fn pick(&self, rng: &mut Rng) -> Pick<'_> {
        let mut pick = (rng.next() % u64::from(self.total_weight.max(1))) as u32;
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
        let key = self.key(rng.next() as usize);
        let value = matches!(entry.op, LoadOp::Set | LoadOp::Cas).then(|| self.value(rng));
        Pick { entry, key, value }
    }

    /// Runs `pick` through `driver` when its turn comes and records it into `recorder`.
    pub async fn call(
        &self,
        driver: &mut dyn Driver,
        pick: Pick<'_>,
        recorder: &Recorder,
    ) -> (LoadOp, Duration, CallResult) {
        self.wait_turn().await;
        let Pick { entry, key, value } = pick;
        let started = Instant::now();
        let outcome = match entry.op {
            LoadOp::Get => driver.get(key).await.map(|_| ()),
            LoadOp::Set => driver.set(key, value.unwrap_or_default(), None).await,
            LoadOp::Delete => driver.delete(key).await,
            LoadOp::Exists => driver.exists(key).await,
            LoadOp::Scan => driver.scan(&self.prefix, key, entry.page).await,
            LoadOp::Cas => match driver.get(key).await {
                Ok(version) => match driver
                    .set(key, value.unwrap_or_default(), Some(version.unwrap_or(0)))
                    .await
                {
                    Err(c) if c == "ABORTED" => Ok(()), // a lost race is the expected outcome of CAS
                    other => other,
                },
                Err(e) => Err(e),
            },
        };
        let latency = started.elapsed();
        recorder.record(entry.op.name(), latency, outcome.clone());
        (entry.op, latency, outcome)
    }
}

//! KeyValue capability traits. An adapter implements [`KvBasic`] and exposes each optional capability
//! by returning `Some` from the matching [`KvStore`] accessor, so what it declares is what it has.

pub use crate::backends::error::{StoreError, StoreResult};
use crate::patterns::capability::Capability;
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// A stored value as a read returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value bytes.
    pub value: Bytes,
    /// The version of the write that produced it.
    pub version: u64,
    /// Remaining time to live; `None` when the key does not expire.
    pub ttl: Option<Duration>,
}

/// The condition of a compare-and-set write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Write only when the key is absent (or expired).
    IfAbsent,
    /// Write only when the key exists with exactly this version.
    IfVersion(u64),
}

/// One write in a batch.
#[derive(Clone, Debug)]
pub struct BatchItem {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// Expiry, `None` for none.
    pub ttl: Option<Duration>,
}

/// One item of a Scan page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanItem {
    /// The key.
    pub key: String,
    /// The value, unless the scan was keys-only.
    pub value: Option<Bytes>,
}

impl ScanItem {
    /// Bytes of key and value, as counted against a page's byte budget.
    pub fn size(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, |v| v.len())
    }
}

/// Collects a scan page from rows as they stream in, stopping after the item that takes the page
/// over `max_bytes` (so the caller sees more follow) without reading further rows.
pub async fn collect_page<S, E>(mut rows: S, max_bytes: usize) -> Result<Vec<ScanItem>, E>
where
    S: futures_util::Stream<Item = Result<ScanItem, E>> + Unpin,
{
    use futures_util::TryStreamExt;
    let mut budget = ByteBudget::new(max_bytes);
    let mut page = Vec::new();
    while let Some(item) = rows.try_next().await? {
        let size = item.size();
        page.push(item);
        if budget.spend(size) {
            break;
        }
    }
    Ok(page)
}

/// Counts the bytes of a page or batch against a budget.
#[derive(Debug, Clone, Copy)]
pub struct ByteBudget {
    used: usize,
    max: usize,
}

impl ByteBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { used: 0, max }
    }

    /// Counts an item of `bytes`; `true` once the total is over the budget.
    pub fn spend(&mut self, bytes: usize) -> bool {
        self.used = self.used.saturating_add(bytes);
        self.used > self.max
    }
}

/// `keyvalue.basic`: Get, Set, Delete, Exists. Keys are namespaced by `ns`; adapters keep namespaces apart.
#[async_trait]
pub trait KvBasic: Send + Sync {
    /// Reads a key; expired keys are `None`.
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Entry>>;
    /// Writes a key (replacing any expiry with `ttl`) and returns the new version.
    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreResult<u64>;
    /// Deletes a key; `false` when it did not exist.
    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool>;
    /// Whether a live key exists.
    async fn exists(&self, ns: &str, key: &str) -> StoreResult<bool>;
}

/// `keyvalue.ttl`: change the expiry of an existing key.
#[async_trait]
pub trait KvTtl: Send + Sync {
    /// Sets (`Some`) or removes (`None`) the expiry; `false` when the key does not exist.
    async fn expire(&self, ns: &str, key: &str, ttl: Option<Duration>) -> StoreResult<bool>;
}

/// `keyvalue.scan`: ordered prefix scans.
#[async_trait]
pub trait KvScan: Send + Sync {
    /// Up to `limit` live keys starting with `prefix` and greater than `after`, in byte order,
    /// stopping early after the item that takes keys and values over `max_bytes` — so the caller
    /// sees that more follow, and never holds more than the budget plus one value.
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
        keys_only: bool,
    ) -> StoreResult<Vec<ScanItem>>;
}

/// `keyvalue.batch`: several keys per call.
#[async_trait]
pub trait KvBatch: Send + Sync {
    /// Writes every item; versions in item order.
    async fn batch_set(&self, ns: &str, items: Vec<BatchItem>) -> StoreResult<Vec<u64>>;
    /// Reads every key; results in key order. Values adding up to more than `max_bytes` are
    /// [`StoreError::TooLarge`], found before they are all held in memory.
    async fn batch_get(
        &self,
        ns: &str,
        keys: &[String],
        max_bytes: usize,
    ) -> StoreResult<Vec<Option<Entry>>>;
    /// Deletes every key; how many existed.
    async fn batch_delete(&self, ns: &str, keys: &[String]) -> StoreResult<u32>;
}

/// `keyvalue.cas`: conditional writes, atomic in the backend.
#[async_trait]
pub trait KvCas: Send + Sync {
    /// Writes only if `condition` holds, atomically; returns the new version.
    async fn set_if(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> StoreResult<u64>;
}

/// A KeyValue adapter: basic operations plus the optional capabilities it really implements.
pub trait KvStore: KvBasic {
    /// `keyvalue.ttl`, if offered.
    fn ttl(&self) -> Option<&dyn KvTtl> {
        None
    }
    /// `keyvalue.scan`, if offered.
    fn scan(&self) -> Option<&dyn KvScan> {
        None
    }
    /// `keyvalue.batch`, if offered.
    fn batch(&self) -> Option<&dyn KvBatch> {
        None
    }
    /// `keyvalue.cas`, if offered.
    fn cas(&self) -> Option<&dyn KvCas> {
        None
    }
    /// Whether acknowledged writes survive a proxy restart and a crash of the backend's process
    /// (`keyvalue.durable`).
    fn durable(&self) -> bool {
        false
    }
    /// The capabilities this adapter declares, derived from the accessors above.
    fn capabilities(&self) -> Vec<Capability> {
        let mut caps = vec![Capability::KvBasic];
        if self.ttl().is_some() {
            caps.push(Capability::KvTtl);
        }
        if self.scan().is_some() {
            caps.push(Capability::KvScan);
        }
        if self.batch().is_some() {
            caps.push(Capability::KvBatch);
        }
        if self.cas().is_some() {
            caps.push(Capability::KvCas);
        }
        if self.durable() {
            caps.push(Capability::KvDurable);
        }
        caps
    }
}

/// Implements [`KvStore`] for an adapter that offers every KeyValue capability: each accessor
/// returns the adapter itself (which must implement every capability trait). The backend's kind is
/// its bundle's (`Backend::kind`). `durable = f` adds `keyvalue.durable` where `f(store)` holds.
#[macro_export]
macro_rules! kv_store_with_every_capability {
    ($store:ty $(, durable = $durable:expr)?) => {
        impl $crate::patterns::keyvalue::store::KvStore for $store {
            fn ttl(&self) -> Option<&dyn $crate::patterns::keyvalue::store::KvTtl> {
                Some(self)
            }
            fn scan(&self) -> Option<&dyn $crate::patterns::keyvalue::store::KvScan> {
                Some(self)
            }
            fn batch(&self) -> Option<&dyn $crate::patterns::keyvalue::store::KvBatch> {
                Some(self)
            }
            fn cas(&self) -> Option<&dyn $crate::patterns::keyvalue::store::KvCas> {
                Some(self)
            }
            $(
                fn durable(&self) -> bool {
                    let durable: fn(&Self) -> bool = $durable;
                    durable(self)
                }
            )?
        }
    };
}

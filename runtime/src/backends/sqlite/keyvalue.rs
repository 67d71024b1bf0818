//! SQLite's KeyValue adapter: every KeyValue capability on the connection and helpers of `mod.rs`.

use super::*;

#[async_trait]
impl KvBasic for SqliteStore {
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Entry>> {
        get_live(&self.read, ns, key, now_ms()).await
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        let mut tx = write_tx(&self.write).await?;
        let version = upsert(&mut tx, ns, key, &value, expiry(now_ms(), ttl)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(version)
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let mut conn = self.write.acquire().await.map_err(classify)?;
        delete_live(&mut conn, ns, key, now_ms()).await
    }

    async fn exists(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM prism_kv WHERE ns = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(ns)
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.read)
        .await
        .map_err(classify)?;
        Ok(row.is_some())
    }
}

#[async_trait]
impl KvTtl for SqliteStore {
    async fn expire(&self, ns: &str, key: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE prism_kv SET expires_at = ?
             WHERE ns = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(expiry(now, ttl))
        .bind(ns)
        .bind(key)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl KvScan for SqliteStore {
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
        keys_only: bool,
    ) -> StoreResult<Vec<ScanItem>> {
        // Keys compare with BINARY collation (memcmp), i.e. UTF-8 byte order, like the other backends.
        // `substr(key, 1, length(prefix)) = prefix` is an exact prefix test (no LIKE wildcards to escape).
        let (bound, exclusive) = crate::patterns::keyvalue::keys::scan_start(prefix, after);
        let rows = sqlx::query(
            "SELECT key, CASE WHEN ? THEN NULL ELSE value END FROM prism_kv
             WHERE ns = ? AND (key > ? OR (key = ? AND NOT ?)) AND substr(key, 1, length(?)) = ?
               AND (expires_at IS NULL OR expires_at > ?)
             ORDER BY key LIMIT ?",
        )
        .bind(keys_only)
        .bind(ns)
        .bind(bound)
        .bind(bound)
        .bind(exclusive)
        .bind(prefix)
        .bind(prefix)
        .bind(now_ms())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch(&self.read)
        .map_ok(|r| ScanItem {
            key: r.get(0),
            value: r.get::<Option<Vec<u8>>, _>(1).map(Bytes::from),
        });
        // Rows stream in, so a page of large values stops at the byte budget without loading more.
        collect_page(rows, max_bytes).await.map_err(classify)
    }
}

#[async_trait]
impl KvBatch for SqliteStore {
    async fn batch_set(&self, ns: &str, items: Vec<BatchItem>) -> StoreResult<Vec<u64>> {
        let now = now_ms();
        let mut tx = write_tx(&self.write).await?;
        let mut versions = Vec::with_capacity(items.len());
        for item in &items {
            versions
                .push(upsert(&mut tx, ns, &item.key, &item.value, expiry(now, item.ttl)).await?);
        }
        tx.commit().await.map_err(classify)?;
        Ok(versions)
    }

    async fn batch_get(
        &self,
        ns: &str,
        keys: &[String],
        max_bytes: usize,
    ) -> StoreResult<Vec<Option<Entry>>> {
        let now = now_ms();
        let mut budget = ByteBudget::new(max_bytes);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let entry = get_live(&self.read, ns, key, now).await?;
            if budget.spend(entry.as_ref().map_or(0, |e| e.value.len())) {
                return Err(StoreError::TooLarge { limit: max_bytes });
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn batch_delete(&self, ns: &str, keys: &[String]) -> StoreResult<u32> {
        let now = now_ms();
        let mut tx = write_tx(&self.write).await?;
        let mut deleted = 0u32;
        for key in keys {
            if delete_live(&mut tx, ns, key, now).await? {
                deleted += 1;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(deleted)
    }
}

#[async_trait]
impl KvCas for SqliteStore {
    async fn set_if(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> StoreResult<u64> {
        let now = now_ms();
        // The single writer connection makes check-then-write atomic within this transaction.
        let mut tx = write_tx(&self.write).await?;
        let current = live_version(&mut tx, ns, key, now).await?;
        match (condition, current) {
            (Condition::IfAbsent, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            (Condition::IfVersion(expected), current) if current != Some(expected) => {
                return Err(StoreError::VersionMismatch {
                    key: key.to_string(),
                    expected,
                    current,
                });
            }
            _ => {}
        }
        let version = upsert(&mut tx, ns, key, &value, expiry(now, ttl)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(version)
    }
}

// A database file is durable (WAL, synchronous commits); `:memory:` is gone with the process.
crate::kv_store_with_every_capability!(
    SqliteStore,
    durable = |s| s.write.connect_options().get_filename() != std::path::Path::new(":memory:")
);

//! Redis's KeyValue adapter: every KeyValue capability on the connection and helpers of `mod.rs`.

use super::*;

#[async_trait]
impl KvBasic for RedisStore {
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Entry>> {
        // Two plain commands in one MULTI/EXEC round trip: atomic like a script, but without
        // running Lua on the server for the most common call.
        let data_key = self.data_key(ns, key);
        let (fields, pttl): (Value, Value) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(&data_key)
            .arg("v")
            .arg("n")
            .cmd("PTTL")
            .arg(&data_key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        hmget_entry(&fields, &pttl)
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        self.write(ns, key, &value, ttl, None).await
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let n: i64 = DELETE
            .key(self.data_key(ns, key))
            .key(self.index_key(ns))
            .arg(key)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        Ok(n > 0)
    }

    async fn exists(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.data_key(ns, key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        Ok(n > 0)
    }
}

#[async_trait]
impl KvTtl for RedisStore {
    async fn expire(&self, ns: &str, key: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        let n: i64 = EXPIRE
            .key(self.data_key(ns, key))
            .arg(ttl_arg(ttl))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        Ok(n > 0)
    }
}

#[async_trait]
impl KvScan for RedisStore {
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
        keys_only: bool,
    ) -> StoreResult<Vec<ScanItem>> {
        let min = match crate::patterns::keyvalue::keys::scan_start(prefix, after) {
            (after, true) => format!("({after}"),
            (prefix, false) => format!("[{prefix}"),
        };
        let max = prefix_end(prefix).map_or_else(|| "+".to_string(), |end| format!("({end}"));
        let reply: Vec<Vec<u8>> = SCAN
            .key(self.index_key(ns))
            .arg(self.data_prefix(ns))
            .arg(min)
            .arg(max)
            .arg(limit)
            .arg(if keys_only { "1" } else { "0" })
            .arg(max_bytes)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        let mut items = Vec::with_capacity(reply.len() / 2);
        let mut it = reply.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = String::from_utf8(k).map_err(|e| StoreError::Internal(Box::new(e)))?;
            items.push(ScanItem {
                key,
                value: (!keys_only).then(|| Bytes::from(v)),
            });
        }
        Ok(items)
    }
}

#[async_trait]
impl KvBatch for RedisStore {
    async fn batch_set(&self, ns: &str, items: Vec<BatchItem>) -> StoreResult<Vec<u64>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.remember(ns);
        let mut call = BATCH_SET.key(self.index_key(ns));
        call.key(self.counter_key()).arg(self.data_prefix(ns));
        for item in &items {
            call.arg(&item.key)
                .arg(item.value.as_ref())
                .arg(ttl_arg(item.ttl));
        }
        call.invoke_async(&mut self.conn.clone())
            .await
            .map_err(classify)
    }

    async fn batch_get(
        &self,
        ns: &str,
        keys: &[String],
        max_bytes: usize,
    ) -> StoreResult<Vec<Option<Entry>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = BATCH_GET.arg(self.data_prefix(ns));
        call.arg(max_bytes);
        for k in keys {
            call.arg(k);
        }
        let reply: Value = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        if let Value::Int(-1) = reply {
            return Err(StoreError::TooLarge { limit: max_bytes });
        }
        let Value::Array(results) = &reply else {
            return Err(bad_reply("batch get", &reply));
        };
        results.iter().map(entry).collect()
    }

    async fn batch_delete(&self, ns: &str, keys: &[String]) -> StoreResult<u32> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut call = BATCH_DELETE.key(self.index_key(ns));
        call.arg(self.data_prefix(ns));
        for k in keys {
            call.arg(k);
        }
        let n: i64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl KvCas for RedisStore {
    async fn set_if(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> StoreResult<u64> {
        self.write(ns, key, &value, ttl, Some(condition)).await
    }
}

crate::kv_store_with_every_capability!(RedisStore, durable = |s| s.durable);

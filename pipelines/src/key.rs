//! State keys: one 128-bit hash per (tenant, id) pair, so state maps never
//! allocate a key per event.

/// The state key of a verification (or of any per-tenant entity): a 128-bit hash of
/// (tenant, id). `0xff` never occurs in UTF-8, so the separator makes the pair
/// unambiguous; at 128 bits a collision among even billions of keys is beyond
/// practical concern.
pub fn verification_key(tenant_id: &str, verification_id: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(tenant_id.as_bytes());
    h.update(&[0xff]);
    h.update(verification_id.as_bytes());
    h.digest128()
}

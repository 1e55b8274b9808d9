//! Helpers shared by the integration tests (each test file that needs them says `mod common;`).
#![allow(dead_code)] // every test file uses a different subset

use safetensors::{Dtype, SafeTensors};

/// The little-endian values of tensor `key`, after checking it has the expected dtype (the
/// fixtures' dtypes are part of what is compared).
fn values<const B: usize, T>(
    st: &SafeTensors,
    key: &str,
    dtype: Dtype,
    from: fn([u8; B]) -> T,
) -> Vec<T> {
    let t = st.tensor(key).unwrap();
    assert_eq!(t.dtype(), dtype, "{key}");
    t.data()
        .chunks_exact(B)
        .map(|c| from(c.try_into().unwrap()))
        .collect()
}

pub fn i64s(st: &SafeTensors, key: &str) -> Vec<i64> {
    values(st, key, Dtype::I64, i64::from_le_bytes)
}

pub fn f32s(st: &SafeTensors, key: &str) -> Vec<f32> {
    values(st, key, Dtype::F32, f32::from_le_bytes)
}

pub fn f64s(st: &SafeTensors, key: &str) -> Vec<f64> {
    values(st, key, Dtype::F64, f64::from_le_bytes)
}

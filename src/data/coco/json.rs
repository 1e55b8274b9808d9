//! Typed, lenient parsing of COCO annotation files in one pass.
//!
//! Every field the loader uses is parsed by a visitor that accepts the expected JSON type and
//! records any other type as a problem instead of failing: serde would otherwise abort at the
//! first wrong value, before the annotation's `id` (the last key in COCO files) is known, so
//! the error could not name the annotation. Unknown fields are skipped. Strings are borrowed
//! from the file buffer when they contain no escapes (all of COCO's RLE strings).

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A parsed field, or a description of what was found instead of the expected type.
pub type Field<T> = Result<T, String>;

fn missing<T>() -> Field<T> {
    Err("missing".into())
}

/// Visitor methods that turn an unexpected JSON type into `Ok(Err(description))`, consuming
/// lists and objects so that parsing can go on.
macro_rules! reject {
    ($what:expr; $($kind:ident),*) => { $( reject!(@ $what, $kind); )* };
    (@ $what:expr, bool) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Err(format!("expected {}, found {v}", $what)))
        }
    };
    (@ $what:expr, num) => {
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Err(format!("expected {}, found the number {v}", $what)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Err(format!("expected {}, found the number {v}", $what)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Err(format!("expected {}, found the number {v}", $what)))
        }
    };
    (@ $what:expr, str) => {
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Err(format!("expected {}, found the string {v:?}", $what)))
        }
    };
    (@ $what:expr, unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Err(format!("expected {}, found null", $what)))
        }
    };
    (@ $what:expr, seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Err(format!("expected {}, found a list", $what)))
        }
    };
    (@ $what:expr, map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Err(format!("expected {}, found an object", $what)))
        }
    };
}

/// A JSON number as `f64`.
pub struct Num(pub Field<f64>);

impl Default for Num {
    fn default() -> Self {
        Num(missing())
    }
}

struct NumV;

impl<'de> Visitor<'de> for NumV {
    type Value = Field<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Ok(v as f64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Ok(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Ok(v))
    }
    reject!("a number"; bool, str, unit, seq, map);
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumV).map(Num)
    }
}

/// A JSON integer (an integral float such as `3.0` is accepted, as Python dict keys would).
pub struct Int(pub Field<i64>);

impl Default for Int {
    fn default() -> Self {
        Int(missing())
    }
}

struct IntV;

impl<'de> Visitor<'de> for IntV {
    type Value = Field<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_err(|_| format!("expected an integer, found {v} (too large)")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Ok(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(Ok(v as i64))
        } else {
            Ok(Err(format!("expected an integer, found {v}")))
        }
    }
    reject!("an integer"; bool, str, unit, seq, map);
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntV).map(Int)
    }
}

/// A JSON string, borrowed from the input when possible.
pub struct Text<'a>(pub Field<Cow<'a, str>>);

impl Default for Text<'_> {
    fn default() -> Self {
        Text(missing())
    }
}

struct TextV;

impl<'de> Visitor<'de> for TextV {
    type Value = Field<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Owned(v)))
    }
    reject!("a string"; bool, num, unit, seq, map);
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextV).map(Text)
    }
}

/// A list of numbers (a polygon, a bbox).
struct Nums(Field<Vec<f64>>);

struct NumsV;

impl<'de> Visitor<'de> for NumsV {
    type Value = Field<Vec<f64>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of numbers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        let mut bad = None;
        while let Some(Num(v)) = seq.next_element::<Num>()? {
            match v {
                Ok(v) => out.push(v),
                Err(e) => {
                    bad.get_or_insert_with(|| format!("element {}: {e}", out.len()));
                }
            }
        }
        Ok(match bad {
            Some(e) => Err(e),
            None => Ok(out),
        })
    }
    reject!("a list of numbers"; bool, num, str, unit, map);
}

impl<'de> Deserialize<'de> for Nums {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumsV).map(Nums)
    }
}

/// `bbox`: `[x, y, w, h]`.
pub struct Bbox(pub Field<[f64; 4]>);

impl Default for Bbox {
    fn default() -> Self {
        Bbox(missing())
    }
}

impl<'de> Deserialize<'de> for Bbox {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Nums(v) = Nums::deserialize(d)?;
        Ok(Bbox(v.and_then(|v| {
            <[f64; 4]>::try_from(v.as_slice())
                .map_err(|_| format!("expected 4 numbers [x, y, w, h], found {}", v.len()))
        })))
    }
}

/// RLE `counts`: a compressed string or a list of run lengths.
pub enum Counts<'a> {
    Compressed(Cow<'a, str>),
    Runs(Vec<u32>),
}

struct CountsV;

impl<'de> Visitor<'de> for CountsV {
    type Value = Field<Counts<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of run lengths")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Ok(Counts::Compressed(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(Counts::Compressed(Cow::Owned(v.to_string()))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        let mut bad = None;
        while let Some(Int(v)) = seq.next_element::<Int>()? {
            match v.and_then(|v| {
                u32::try_from(v).map_err(|_| format!("run length {v} is not in 0..2^32"))
            }) {
                Ok(v) => out.push(v),
                Err(e) => {
                    bad.get_or_insert_with(|| format!("element {}: {e}", out.len()));
                }
            }
        }
        Ok(match bad {
            Some(e) => Err(e),
            None => Ok(Counts::Runs(out)),
        })
    }
    reject!("a string or a list of run lengths"; bool, num, unit, map);
}

struct CountsField<'a>(Field<Counts<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for CountsField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CountsV).map(CountsField)
    }
}

/// `segmentation` as found in the file.
pub enum RawSeg<'a> {
    Polygons(Vec<Vec<f64>>),
    Rle {
        counts: Counts<'a>,
        size: [usize; 2],
    },
}

/// `segmentation`.
pub struct Seg<'a>(pub Field<RawSeg<'a>>);

impl Default for Seg<'_> {
    fn default() -> Self {
        Seg(missing())
    }
}

struct SegV;

impl<'de> Visitor<'de> for SegV {
    type Value = Field<RawSeg<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of polygons or an RLE object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut polys = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        let mut bad = None;
        while let Some(Nums(p)) = seq.next_element::<Nums>()? {
            match p {
                Ok(p) => polys.push(p),
                Err(e) => {
                    bad.get_or_insert_with(|| format!("polygon {}: {e}", polys.len()));
                }
            }
        }
        Ok(match bad {
            Some(e) => Err(e),
            None => Ok(RawSeg::Polygons(polys)),
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut counts: Option<Field<Counts<'de>>> = None;
        let mut size: Option<Field<Vec<f64>>> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "counts" => counts = Some(map.next_value::<CountsField<'de>>()?.0),
                "size" => size = Some(map.next_value::<Nums>()?.0),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let counts = match counts {
            None => return Ok(Err("RLE object has no `counts`".into())),
            Some(Err(e)) => return Ok(Err(format!("counts: {e}"))),
            Some(Ok(c)) => c,
        };
        let size = match size {
            None => return Ok(Err("RLE object has no `size`".into())),
            Some(Err(e)) => return Ok(Err(format!("size: {e}"))),
            Some(Ok(s)) => s,
        };
        let ok = |v: f64| v >= 0.0 && v.fract() == 0.0 && v < 1e9;
        match size.as_slice() {
            &[h, w] if ok(h) && ok(w) => Ok(Ok(RawSeg::Rle {
                counts,
                size: [h as usize, w as usize],
            })),
            _ => Ok(Err(format!(
                "size: expected [height, width] (two non-negative integers), found {size:?}"
            ))),
        }
    }
    reject!("a list of polygons or an RLE object"; bool, num, str, unit);
}

impl<'de: 'a, 'a> Deserialize<'de> for Seg<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SegV).map(Seg)
    }
}

/// One entry of `images`.
#[derive(Deserialize)]
pub struct RawImage<'a> {
    #[serde(default)]
    pub id: Int,
    #[serde(default, borrow)]
    pub file_name: Text<'a>,
    #[serde(default)]
    pub width: Int,
    #[serde(default)]
    pub height: Int,
}

/// One entry of `categories`.
#[derive(Deserialize)]
pub struct RawCategory<'a> {
    #[serde(default)]
    pub id: Int,
    #[serde(default, borrow)]
    pub name: Text<'a>,
}

/// One entry of `annotations`.
#[derive(Deserialize)]
pub struct RawAnnotation<'a> {
    #[serde(default)]
    pub id: Int,
    #[serde(default)]
    pub image_id: Int,
    #[serde(default)]
    pub category_id: Int,
    #[serde(default)]
    pub bbox: Bbox,
    #[serde(default, borrow)]
    pub segmentation: Seg<'a>,
}

/// The parts of an instances/stuff JSON file the loader reads.
#[derive(Deserialize)]
pub struct RawFile<'a> {
    #[serde(default, borrow)]
    pub images: Option<Vec<RawImage<'a>>>,
    #[serde(default, borrow)]
    pub categories: Option<Vec<RawCategory<'a>>>,
    #[serde(default, borrow)]
    pub annotations: Option<Vec<RawAnnotation<'a>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_recorded_not_fatal() {
        let text = r#"{"annotations": [
            {"segmentation": {"counts": "abc", "size": [2, 3]}, "bbox": [1, 2, "x", 4],
             "category_id": 5, "image_id": 7, "id": 9, "extra": {"a": [1]}},
            {"segmentation": [[1, 2, 3, 4, 5, 6]], "bbox": [1, 2, 3], "id": 10.0}
        ]}"#;
        let f: RawFile = serde_json::from_str(text).unwrap();
        let a = f.annotations.unwrap();
        assert_eq!(a[0].id.0, Ok(9));
        assert_eq!(
            a[0].bbox.0.as_ref().unwrap_err(),
            "element 2: expected a number, found the string \"x\""
        );
        assert!(matches!(
            a[0].segmentation.0,
            Ok(RawSeg::Rle {
                counts: Counts::Compressed(Cow::Borrowed("abc")),
                size: [2, 3]
            })
        ));
        assert_eq!(a[1].id.0, Ok(10));
        assert_eq!(a[1].image_id.0, Err("missing".to_string()));
        assert_eq!(
            a[1].bbox.0.as_ref().unwrap_err(),
            "expected 4 numbers [x, y, w, h], found 3"
        );
        assert!(matches!(&a[1].segmentation.0, Ok(RawSeg::Polygons(p)) if p.len() == 1));
    }
}

//! Where each node of a YAML document sits in its text, so that an error found after parsing
//! (a pool that does not exist, a duplicate name) can still point at a line and column.
//!
//! The typed model carries no positions; instead the same text is read once more into this
//! light tree of positions, and a validation error's path (`shared.services[2].pool`) is looked
//! up in it.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A path inside the document, built while validating.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocPath(Vec<Segment>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl DocPath {
    pub fn root() -> Self {
        DocPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Positions of every mapping value and sequence element in a document.
#[derive(Debug)]
pub struct SourceMap {
    root: Option<Spanned<Node>>,
}

#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl SourceMap {
    /// Reads the positions of `text`. A text that does not parse gives an empty map (its
    /// parse error carries its own position).
    pub fn new(text: &str) -> Self {
        SourceMap {
            root: serde_saphyr::from_str(text).ok(),
        }
    }

    /// An empty map, for documents that have no text (built by the console or the API).
    pub fn empty() -> Self {
        SourceMap { root: None }
    }

    /// Line and column (1-based) of the node at `path`, or of its nearest ancestor that
    /// exists (a missing key points at the mapping that lacks it); `(0, 0)` when unknown.
    pub fn locate(&self, path: &DocPath) -> (u64, u64) {
        let Some(mut node) = self.root.as_ref() else {
            return (0, 0);
        };
        for seg in &path.0 {
            let child = match (&node.value, seg) {
                (Node::Map(entries), Segment::Key(k)) => {
                    entries.iter().find(|(name, _)| name == k).map(|(_, v)| v)
                }
                (Node::Seq(items), Segment::Index(i)) => items.get(*i),
                _ => None,
            };
            match child {
                Some(c) => node = c,
                None => break,
            }
        }
        (node.referenced.line(), node.referenced.column())
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                // Keys that are not strings (rare in a config) are skipped: no path names them.
                while let Some(key) = map.next_key::<KeyText>()? {
                    let value = map.next_value()?;
                    if let KeyText(Some(k)) = key {
                        entries.push((k, value));
                    }
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

struct KeyText(Option<String>);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_values_and_falls_back_to_the_nearest_ancestor() {
        let text = "shared:\n  services:\n    - name: a\n      pool: web\n    - name: b\n      pool: api\n";
        let map = SourceMap::new(text);
        let services = DocPath::root().key("shared").key("services");
        assert_eq!(map.locate(&services.index(1).key("pool")), (6, 13));
        assert_eq!(map.locate(&services.index(0).key("name")), (3, 13));
        // `listen` is missing from the second service: point at the service itself.
        assert_eq!(map.locate(&services.index(1).key("listen")), (5, 7));
        assert_eq!(
            services.index(1).key("pool").to_string(),
            "shared.services[1].pool"
        );
    }

    #[test]
    fn unparsable_text_locates_nothing() {
        assert_eq!(
            SourceMap::new("a: [").locate(&DocPath::root().key("a")),
            (0, 0)
        );
    }
}

//! A small owned tree for one stanza, bounded by the framer's limits.

use std::borrow::Cow;

use rxml::{AttrMap, Namespace, NcName};

/// One element of a stanza.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Element {
    pub(crate) ns: Namespace<'static>,
    pub(crate) name: NcName,
    pub(crate) attrs: AttrMap,
    pub(crate) children: Vec<Node>,
}

/// The unqualified attributes a stanza's handling reads, found in one pass:
/// each [`Element::attr`] is a search of two nested B-trees, and a relayed
/// message needs five of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    pub(crate) from: Option<&'a str>,
    pub(crate) to: Option<&'a str>,
    pub(crate) id: Option<&'a str>,
    /// The `type` attribute.
    pub(crate) kind: Option<&'a str>,
}

/// Content of an element.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    /// An unqualified attribute.
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(&Namespace::NONE, name).map(String::as_str)
    }

    /// `from`, `to`, `id` and `type`.
    pub(crate) fn head(&self) -> Head<'_> {
        let mut head = Head::default();
        // Unqualified attributes come first: the empty namespace sorts first.
        for ((ns, name), value) in self.attrs.iter() {
            if !ns.as_str().is_empty() {
                break;
            }
            let slot = match name.as_str() {
                "from" => &mut head.from,
                "to" => &mut head.to,
                "id" => &mut head.id,
                "type" => &mut head.kind,
                _ => continue,
            };
            *slot = Some(value.as_str());
        }
        head
    }

    /// `xml:lang`, if present.
    pub(crate) fn lang(&self) -> Option<&str> {
        self.attrs.get(crate::ns::XML, "lang").map(String::as_str)
    }

    pub(crate) fn is(&self, ns: &str, name: &str) -> bool {
        self.name.as_str() == name && self.ns.as_str() == ns
    }

    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    pub(crate) fn ns(&self) -> &str {
        self.ns.as_str()
    }

    /// Child elements, in order.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element in `ns` named `name`.
    #[cfg(test)]
    pub(crate) fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(ns, name))
    }

    /// Roughly the heap this tree holds: its names, attribute values and
    /// text, plus a fixed cost per node for the structures around them.
    /// Bounds what waiting stanzas may hold in total.
    pub(crate) fn weight(&self) -> usize {
        const NODE: usize = 64;
        let attrs: usize = self.attrs.iter().map(|(_, v)| NODE + v.len()).sum();
        let children: usize = self
            .children
            .iter()
            .map(|n| match n {
                Node::Element(e) => e.weight(),
                Node::Text(t) => NODE + t.len(),
            })
            .sum();
        NODE + self.name.len() + attrs + children
    }

    /// The element's own text, concatenated; borrowed when it is one piece
    /// (the framer merges adjacent text, so it is unless children split it).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        let mut texts = self.children.iter().filter_map(|n| match n {
            Node::Text(t) => Some(t.as_str()),
            Node::Element(_) => None,
        });
        let first = texts.next().unwrap_or_default();
        match texts.next() {
            None => Cow::Borrowed(first),
            Some(second) => Cow::Owned([first, second].into_iter().chain(texts).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(name: &str, children: Vec<Node>) -> Element {
        Element {
            ns: Namespace::NONE,
            name: NcName::try_from(name).expect("a valid name"),
            attrs: AttrMap::new(),
            children,
        }
    }

    #[test]
    fn head_reads_only_unqualified_attributes() {
        let name = |n: &str| NcName::try_from(n).expect("a valid name");
        let mut e = el("message", vec![]);
        let other = Namespace::from("urn:example:other".to_owned());
        for n in ["from", "to", "id", "type"] {
            e.attrs
                .insert(other.clone(), name(n), format!("qualified {n}"));
        }
        e.attrs
            .insert(crate::ns::XML.to_owned().into(), name("lang"), "en".into());
        assert_eq!(e.head(), Head::default());
        for (n, v) in [
            ("type", "chat"),
            ("to", "b@y"),
            ("from", "a@x/r"),
            ("id", "1"),
            ("zz", "-"),
        ] {
            e.attrs.insert(Namespace::NONE, name(n), v.into());
        }
        assert_eq!(
            e.head(),
            Head {
                from: Some("a@x/r"),
                to: Some("b@y"),
                id: Some("1"),
                kind: Some("chat"),
            }
        );
        assert_eq!(e.attr("from"), e.head().from);
    }

    #[test]
    fn text_is_borrowed_when_whole_and_joined_when_split() {
        let t = |s: &str| Node::Text(s.into());
        let one = el("body", vec![t("hi")]);
        assert!(matches!(one.text(), Cow::Borrowed("hi")));
        assert_eq!(el("body", vec![]).text(), "");
        let split = el(
            "body",
            vec![
                t("a"),
                Node::Element(el("x", vec![t("no")])),
                t("b"),
                t("c"),
            ],
        );
        assert_eq!(split.text(), "abc");
    }
}

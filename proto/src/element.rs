//! One stanza as the framer read it: a flat record in document order, its
//! strings (names, namespaces, attribute values, text, all decoded) in one
//! buffer. Three allocations hold any stanza, and the framer reuses them
//! for the next one; [`Element`] is a view into it.

use std::borrow::Cow;

/// A byte range of a [`Tree`]'s strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) at: u32,
    pub(crate) end: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Element {
        ns: Span,
        name: Span,
        /// Its attributes: a range of `Tree::attrs`.
        attrs: (u32, u32),
        /// The index after its last descendant.
        end: u32,
    },
    Text(Span),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attr {
    ns: Span,
    name: Span,
    value: Span,
}

/// A stanza: element 0 and everything in it. A clone holds exactly its
/// content (what a waiting stanza keeps), not the capacity the framer's
/// reused buffers grew to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    strs: String,
    nodes: Vec<Node>,
    attrs: Vec<Attr>,
    /// The last node is text no element has followed: more text joins it.
    text_open: bool,
}

/// One element of a [`Tree`].
#[derive(Clone, Copy)]
pub(crate) struct Element<'a> {
    tree: &'a Tree,
    at: u32,
    ns: Span,
    name: Span,
    attrs: (u32, u32),
    end: u32,
}

/// The unqualified attributes a stanza's handling reads, found in one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    pub(crate) from: Option<&'a str>,
    pub(crate) to: Option<&'a str>,
    pub(crate) id: Option<&'a str>,
    /// The `type` attribute.
    pub(crate) kind: Option<&'a str>,
}

impl Tree {
    fn span(&mut self, at: usize) -> Span {
        Span {
            at: at as u32,
            end: self.strs.len() as u32,
        }
    }

    fn push_str(&mut self, s: &str) -> Span {
        let at = self.strs.len();
        self.strs.push_str(s);
        self.span(at)
    }

    /// Forgets the stanza, keeping the capacity.
    pub(crate) fn clear(&mut self) {
        self.strs.clear();
        self.nodes.clear();
        self.attrs.clear();
        self.text_open = false;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A namespace name, for elements and attributes to share: a stanza
    /// names few namespaces, on many elements.
    pub(crate) fn push_ns(&mut self, ns: &str) -> Span {
        self.push_str(ns)
    }

    /// Opens an element in `ns` (from [`Tree::push_ns`]); its attributes
    /// follow ([`Tree::add_attr`]), then its content, then [`Tree::close`]
    /// with the index returned.
    pub(crate) fn open(&mut self, ns: Span, name: &str) -> u32 {
        let name = self.push_str(name);
        let at = self.attrs.len() as u32;
        self.nodes.push(Node::Element {
            ns,
            name,
            attrs: (at, at),
            end: u32::MAX,
        });
        self.text_open = false;
        (self.nodes.len() - 1) as u32
    }

    /// An attribute of the element just opened; `decode` appends its value.
    pub(crate) fn add_attr(&mut self, ns: Span, name: &str, decode: impl FnOnce(&mut String)) {
        let name = self.push_str(name);
        let at = self.strs.len();
        decode(&mut self.strs);
        let value = self.span(at);
        self.attrs.push(Attr { ns, name, value });
        let n = self.attrs.len() as u32;
        if let Some(Node::Element { attrs, .. }) = self.nodes.last_mut() {
            attrs.1 = n;
        }
    }

    /// Length of the attribute value just added.
    pub(crate) fn last_value_len(&self) -> usize {
        self.attrs
            .last()
            .map_or(0, |a| (a.value.end - a.value.at) as usize)
    }

    /// Text in the innermost open element; `decode` appends it.
    pub(crate) fn add_text(&mut self, decode: impl FnOnce(&mut String)) {
        let at = self.strs.len();
        decode(&mut self.strs);
        if self.strs.len() == at {
            return;
        }
        match self.nodes.last_mut() {
            Some(Node::Text(span)) if self.text_open => span.end = self.strs.len() as u32,
            _ => {
                let span = self.span(at);
                self.nodes.push(Node::Text(span));
                self.text_open = true;
            }
        }
    }

    /// Closes the element `open` returned.
    pub(crate) fn close(&mut self, index: u32) {
        let n = self.nodes.len() as u32;
        if let Some(Node::Element { end, .. }) = self.nodes.get_mut(index as usize) {
            *end = n;
        }
        self.text_open = false;
    }

    /// Keeps only the stanza's start tag (for error replies about a stanza
    /// that was not kept).
    pub(crate) fn keep_head(&mut self) {
        let Some(&Node::Element {
            ns, name, attrs, ..
        }) = self.nodes.first()
        else {
            return self.clear();
        };
        self.nodes.truncate(1);
        self.nodes[0] = Node::Element {
            ns,
            name,
            attrs,
            end: 1,
        };
        self.attrs.truncate(attrs.1 as usize);
        // Everything the start tag uses was written before its last value.
        let used = self
            .attrs
            .last()
            .map_or(name.end, |a| a.value.end)
            .max(name.end)
            .max(ns.end);
        self.strs.truncate(used as usize);
        self.text_open = false;
    }

    /// The stanza's element.
    pub(crate) fn root(&self) -> Element<'_> {
        self.element(0)
    }

    fn element(&self, at: u32) -> Element<'_> {
        match self.nodes.get(at as usize) {
            Some(&Node::Element {
                ns,
                name,
                attrs,
                end,
            }) => Element {
                tree: self,
                at,
                ns,
                name,
                attrs,
                end: end.min(self.nodes.len() as u32),
            },
            // Never reached: views are made of element nodes only. An
            // empty element in no namespace stands in.
            _ => Element {
                tree: self,
                at,
                ns: Span::default(),
                name: Span::default(),
                attrs: (0, 0),
                end: at,
            },
        }
    }

    fn get(&self, s: Span) -> &str {
        self.strs
            .get(s.at as usize..s.end as usize)
            .unwrap_or_default()
    }

    /// Roughly the heap this stanza holds; bounds what waiting stanzas
    /// may hold in total.
    pub(crate) fn weight(&self) -> usize {
        self.strs.len()
            + self.nodes.len() * std::mem::size_of::<Node>()
            + self.attrs.len() * std::mem::size_of::<Attr>()
    }

    /// Bytes of names, namespaces, values and text.
    pub(crate) fn text_len(&self) -> usize {
        self.strs.len()
    }

    /// Bytes it holds now, capacity included.
    pub(crate) fn capacity(&self) -> usize {
        self.strs.capacity()
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.attrs.capacity() * std::mem::size_of::<Attr>()
    }
}

impl<'a> Element<'a> {
    fn attrs(&self) -> impl Iterator<Item = &'a Attr> {
        let t = self.tree;
        t.attrs
            .get(self.attrs.0 as usize..self.attrs.1 as usize)
            .unwrap_or_default()
            .iter()
    }

    fn qualified(&self, ns: &str, name: &str) -> Option<&'a str> {
        let t = self.tree;
        self.attrs()
            .find(|a| t.get(a.name) == name && t.get(a.ns) == ns)
            .map(|a| t.get(a.value))
    }

    /// An unqualified attribute.
    pub(crate) fn attr(&self, name: &str) -> Option<&'a str> {
        self.qualified("", name)
    }

    /// `from`, `to`, `id` and `type`.
    pub(crate) fn head(&self) -> Head<'a> {
        let t = self.tree;
        let mut head = Head::default();
        for a in self.attrs() {
            if a.ns.end != a.ns.at {
                continue;
            }
            let slot = match t.get(a.name) {
                "from" => &mut head.from,
                "to" => &mut head.to,
                "id" => &mut head.id,
                "type" => &mut head.kind,
                _ => continue,
            };
            *slot = Some(t.get(a.value));
        }
        head
    }

    /// `xml:lang`, if present.
    pub(crate) fn lang(&self) -> Option<&'a str> {
        self.qualified(crate::ns::XML, "lang")
    }

    pub(crate) fn is(&self, ns: &str, name: &str) -> bool {
        self.name() == name && self.ns() == ns
    }

    pub(crate) fn name(&self) -> &'a str {
        self.tree.get(self.name)
    }

    pub(crate) fn ns(&self) -> &'a str {
        self.tree.get(self.ns)
    }

    /// Child nodes: each an element or a piece of text.
    pub(crate) fn children(&self) -> impl Iterator<Item = Result<Element<'a>, &'a str>> {
        let t = self.tree;
        let mut i = self.at + 1;
        let end = self.end;
        std::iter::from_fn(move || {
            if i >= end {
                return None;
            }
            let node = t.nodes.get(i as usize)?;
            Some(match *node {
                Node::Element { end: e, .. } => {
                    let el = t.element(i);
                    i = e.max(i + 1);
                    Ok(el)
                }
                Node::Text(s) => {
                    i += 1;
                    Err(t.get(s))
                }
            })
        })
    }

    /// Child elements, in order.
    pub(crate) fn elements(&self) -> impl Iterator<Item = Element<'a>> {
        self.children().filter_map(Result::ok)
    }

    /// The first child element in `ns` named `name`.
    #[cfg(test)]
    pub(crate) fn child(&self, ns: &str, name: &str) -> Option<Element<'a>> {
        self.elements().find(|e| e.is(ns, name))
    }

    /// The element's own text, concatenated; borrowed when it is one piece
    /// (adjacent text is joined while reading, so it is unless child
    /// elements split it).
    pub(crate) fn text(&self) -> Cow<'a, str> {
        let mut texts = self.children().filter_map(Result::err);
        let first = texts.next().unwrap_or_default();
        match texts.next() {
            None => Cow::Borrowed(first),
            Some(second) => Cow::Owned([first, second].into_iter().chain(texts).collect()),
        }
    }
}

/// For tests, a tree reads as its stanza element.
#[cfg(test)]
impl Tree {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.root().attr(name)
    }
    pub(crate) fn name(&self) -> &str {
        self.root().name()
    }
    pub(crate) fn elements(&self) -> impl Iterator<Item = Element<'_>> {
        self.root().elements()
    }
    pub(crate) fn attr_count(&self) -> usize {
        self.root().attr_count()
    }
    pub(crate) fn node_count(&self) -> usize {
        self.root().node_count()
    }
}

#[cfg(test)]
impl Element<'_> {
    /// How many attributes it has.
    pub(crate) fn attr_count(&self) -> usize {
        self.attrs().count()
    }

    /// How many child nodes (elements and pieces of text) it has.
    pub(crate) fn node_count(&self) -> usize {
        self.children().count()
    }

    /// Whether text stands directly in it.
    pub(crate) fn has_text(&self) -> bool {
        self.children().any(|c| c.is_err())
    }
}

#[cfg(any(test, feature = "testing"))]
impl<'a> Element<'a> {
    /// Attributes as (namespace, name, value), sorted.
    pub(crate) fn sorted_attrs(&self) -> Vec<(&'a str, &'a str, &'a str)> {
        let t = self.tree;
        let mut all: Vec<_> = self
            .attrs()
            .map(|a| (t.get(a.ns), t.get(a.name), t.get(a.value)))
            .collect();
        all.sort_unstable();
        all
    }
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tree;
        let mut d = f.debug_struct("Element");
        d.field("ns", &self.ns()).field("name", &self.name());
        let attrs: Vec<_> = self
            .attrs()
            .map(|a| (t.get(a.ns), t.get(a.name), t.get(a.value)))
            .collect();
        d.field("attrs", &attrs);
        let children: Vec<_> = self.children().collect();
        d.field("children", &children).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let mut t = Tree::default();
        let component = t.push_ns("jabber:component:accept");
        let m = t.open(component, "message");
        for (ns, n, v) in [
            ("urn:other", "from", "qualified"),
            ("", "type", "chat"),
            ("", "to", "b@y"),
            ("", "from", "a@x/r"),
            ("", "id", "1"),
            ("", "zz", "-"),
            (crate::ns::XML, "lang", "en"),
        ] {
            let ns = t.push_ns(ns);
            t.add_attr(ns, n, |s| s.push_str(v));
        }
        let b = t.open(component, "body");
        t.add_text(|s| s.push('a'));
        t.add_text(|s| s.push('b'));
        let urn_x = t.push_ns("urn:x");
        let x = t.open(urn_x, "x");
        t.add_text(|s| s.push_str("no"));
        t.close(x);
        t.add_text(|s| s.push('c'));
        t.close(b);
        let urn_y = t.push_ns("urn:y");
        let y = t.open(urn_y, "empty");
        t.close(y);
        t.close(m);
        t
    }

    #[test]
    fn head_reads_only_unqualified_attributes() {
        let t = tree();
        let e = t.root();
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
        assert_eq!(e.lang(), Some("en"));
        assert_eq!(e.attr("lang"), None);
    }

    #[test]
    fn children_and_text_follow_the_nesting() {
        let t = tree();
        let e = t.root();
        assert!(e.is("jabber:component:accept", "message"));
        let names: Vec<_> = e.elements().map(|c| c.name()).collect();
        assert_eq!(names, ["body", "empty"]);
        let body = e.child("jabber:component:accept", "body").unwrap();
        assert_eq!(body.text(), "abc");
        let x = body.child("urn:x", "x").unwrap();
        assert!(matches!(x.text(), Cow::Borrowed("no")));
        assert_eq!(e.text(), "");
    }

    #[test]
    fn keep_head_leaves_the_start_tag() {
        let mut t = tree();
        let w = t.weight();
        t.keep_head();
        assert!(t.weight() < w);
        let e = t.root();
        assert_eq!(e.head().id, Some("1"));
        assert_eq!(e.lang(), Some("en"));
        assert_eq!(e.elements().count(), 0);
    }
}

//! Protobuf text format (`saved_model.pbtxt`, `graph.pbtxt`), transcoded to the binary wire
//! format for the fields the SavedModel walk reads, so that one walker judges both.
//!
//! TensorFlow reads these files with `google::protobuf::TextFormat::Parser`
//! (`tensorflow/cc/saved_model/reader.cc` `ReadSavedModel` -> `ReadTextProto`) and with Python's
//! `google.protobuf.text_format.Parse` (`loader_impl.parse_saved_model`). The grammar followed
//! here is theirs: `#` comments; a field is `name`, then `:` (optional before a message), then a
//! message in `{...}` or `<...>`, a scalar, or a list `[a, b]`; fields may end with `;` or `,`;
//! adjacent string literals concatenate; strings take the C escapes of
//! `text_format._CUnescape` / `io::Tokenizer::ParseStringAppend` (`\n`, octal, `\x`, `\u`,
//! `\U`, ...); an `Any` may be written expanded as `[type.googleapis.com/Type] {...}`. Fields
//! that the walk does not read are parsed and skipped. Anything that does not follow the grammar
//! is an error (the loaders reject it too), returned with the bytes transcoded up to there.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use super::Root;

/// Largest text-format file read (bigger ones are judged `error`).
pub const MAX_TEXT: usize = 128 << 20;
const MAX_DEPTH: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    SavedModel,
    MetaGraph,
    SaverDef,
    CollectionEntry,
    CollectionDef,
    AnyList,
    Any,
    AssetFileDef,
    TensorInfo,
    Graph,
    Node,
    AttrEntry,
    AttrValue,
    ListValue,
    Tensor,
    NameAttrList,
    Library,
    Function,
    OpDef,
    ArgDef,
    StringEntry,
    ObjectGraph,
    Object,
    UserObject,
    Asset,
    Constant,
    ConcreteEntry,
    ConcreteFunction,
    /// A message whose presence matters but whose fields do not.
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message(Msg),
    Str,
    Int,
}

/// The fields read, by message: (name, number, kind). Others are skipped.
fn field(msg: Msg, name: &str) -> Option<(u32, Kind)> {
    use Kind::*;
    use Msg as M;
    Some(match (msg, name) {
        (M::SavedModel, "saved_model_schema_version") => (1, Int),
        (M::SavedModel, "meta_graphs") => (2, Message(M::MetaGraph)),
        (M::MetaGraph, "graph_def") => (2, Message(M::Graph)),
        (M::MetaGraph, "saver_def") => (3, Message(M::SaverDef)),
        (M::MetaGraph, "collection_def") => (4, Message(M::CollectionEntry)),
        (M::MetaGraph, "asset_file_def") => (6, Message(M::AssetFileDef)),
        (M::MetaGraph, "object_graph_def") => (7, Message(M::ObjectGraph)),
        (M::SaverDef, "filename_tensor_name") => (1, Str),
        (M::CollectionEntry, "key") => (1, Str),
        (M::CollectionEntry, "value") => (2, Message(M::CollectionDef)),
        (M::CollectionDef, "any_list") => (5, Message(M::AnyList)),
        (M::AnyList, "value") => (1, Message(M::Any)),
        (M::Any, "type_url") => (1, Str),
        (M::Any, "value") => (2, Str),
        (M::AssetFileDef, "tensor_info") => (1, Message(M::TensorInfo)),
        (M::AssetFileDef, "filename") => (2, Str),
        (M::TensorInfo, "name") => (1, Str),
        (M::Graph, "node") => (1, Message(M::Node)),
        (M::Graph, "library") => (2, Message(M::Library)),
        (M::Graph, "version") => (3, Int),
        (M::Graph, "versions") => (4, Message(M::Empty)),
        (M::Node, "name") => (1, Str),
        (M::Node, "op") => (2, Str),
        (M::Node, "input") => (3, Str),
        (M::Node, "device") => (4, Str),
        (M::Node, "attr") => (5, Message(M::AttrEntry)),
        (M::AttrEntry, "key") => (1, Str),
        (M::AttrEntry, "value") => (2, Message(M::AttrValue)),
        (M::AttrValue, "list") => (1, Message(M::ListValue)),
        (M::AttrValue, "s") => (2, Str),
        (M::AttrValue, "tensor") => (8, Message(M::Tensor)),
        (M::AttrValue, "func") => (10, Message(M::NameAttrList)),
        (M::ListValue, "s") => (2, Str),
        (M::ListValue, "func") => (9, Message(M::NameAttrList)),
        (M::Tensor, "string_val") => (8, Str),
        (M::NameAttrList, "name") => (1, Str),
        (M::Library, "function") => (1, Message(M::Function)),
        (M::Function, "signature") => (1, Message(M::OpDef)),
        (M::Function, "node_def") => (3, Message(M::Node)),
        (M::Function, "ret") => (4, Message(M::StringEntry)),
        (M::OpDef, "name") => (1, Str),
        (M::OpDef, "input_arg") => (2, Message(M::ArgDef)),
        (M::OpDef, "output_arg") => (3, Message(M::ArgDef)),
        (M::ArgDef, "name") => (1, Str),
        (M::StringEntry, "key") => (1, Str),
        (M::StringEntry, "value") => (2, Str),
        (M::ObjectGraph, "nodes") => (1, Message(M::Object)),
        (M::ObjectGraph, "concrete_functions") => (2, Message(M::ConcreteEntry)),
        (M::Object, "user_object") => (4, Message(M::UserObject)),
        (M::Object, "asset") => (5, Message(M::Asset)),
        (M::Object, "variable") => (7, Message(M::Empty)),
        (M::Object, "constant") => (9, Message(M::Constant)),
        (M::UserObject, "identifier") => (1, Str),
        (M::UserObject, "metadata") => (3, Str),
        (M::Asset, "asset_file_def_index") => (1, Int),
        (M::Constant, "operation") => (1, Str),
        (M::ConcreteEntry, "key") => (1, Str),
        (M::ConcreteEntry, "value") => (2, Message(M::ConcreteFunction)),
        (M::ConcreteFunction, "bound_inputs") => (2, Int),
        _ => return None,
    })
}

/// Field names that can start each root message in text form.
const SAVED_MODEL_FIELDS: &[&str] = &["saved_model_schema_version", "meta_graphs"];
const META_GRAPH_FIELDS: &[&str] = &[
    "meta_info_def",
    "graph_def",
    "saver_def",
    "collection_def",
    "signature_def",
    "asset_file_def",
    "object_graph_def",
];
const GRAPH_FIELDS: &[&str] = &["node", "versions", "library", "version", "debug_info"];

/// The root message a text file starts with: its first field name (after whitespace and
/// comments) is one of the root's, followed by `:`, `{` or `<`.
pub fn root_of(head: &[u8]) -> Option<Root> {
    let mut t = Tok { s: head, pos: 0 };
    t.skip_space();
    let name = t.ident()?;
    t.skip_space();
    if !matches!(t.peek(), Some(b':' | b'{' | b'<')) {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    if SAVED_MODEL_FIELDS.contains(&name) {
        Some(Root::SavedModel)
    } else if META_GRAPH_FIELDS.contains(&name) {
        Some(Root::MetaGraph)
    } else if GRAPH_FIELDS.contains(&name) {
        // `node {` / `versions {`: a bare word like `version:` alone is too common in text.
        (name != "version" || t.peek() != Some(b':')).then_some(Root::Graph)
    } else {
        None
    }
}

/// Does the head look like a text-format TensorFlow graph?
pub fn looks_like_text(head: &[u8]) -> bool {
    root_of(head).is_some()
}

/// A transcoding error at a byte offset of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    pub offset: u64,
    pub what: String,
}

/// Transcode text to binary. On error, the binary form of everything before it comes back too.
pub fn transcode(text: &[u8], root: Root) -> Result<Vec<u8>, (Vec<u8>, TextError)> {
    let msg = match root {
        Root::SavedModel => Msg::SavedModel,
        Root::MetaGraph => Msg::MetaGraph,
        Root::Graph => Msg::Graph,
    };
    let mut t = Tok { s: text, pos: 0 };
    let mut out = Vec::new();
    match t.message(msg, None, 0, &mut out) {
        Ok(()) => Ok(out),
        Err(what) => Err((out, TextError { offset: t.pos as u64, what })),
    }
}

struct Tok<'a> {
    s: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, String>;

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(number: u32, payload: &[u8], out: &mut Vec<u8>) {
    put_varint(u64::from(number) << 3 | 2, out);
    put_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

impl<'a> Tok<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'#' {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.pos += 1;
                }
            } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') {
            return None;
        }
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
            self.pos += 1;
        }
        self.s.get(start..self.pos)
    }

    /// The fields of a message until `close` (or the end of the text for the root).
    fn message(&mut self, msg: Msg, close: Option<u8>, depth: u32, out: &mut Vec<u8>) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(format!("messages nested deeper than {MAX_DEPTH}"));
        }
        loop {
            self.skip_space();
            match (self.peek(), close) {
                (None, None) => return Ok(()),
                (None, Some(c)) => return Err(format!("end of text before '{}'", c as char)),
                (Some(c), Some(want)) if c == want => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {}
            }
            self.field(msg, depth, out)?;
            // An optional separator.
            self.skip_space();
            if matches!(self.peek(), Some(b';' | b',')) {
                self.pos += 1;
            }
        }
    }

    fn field(&mut self, msg: Msg, depth: u32, out: &mut Vec<u8>) -> R<()> {
        if self.peek() == Some(b'[') {
            return self.extension(msg, depth, out);
        }
        let name = self.ident().ok_or_else(|| "expected a field name".to_string())?;
        let name = std::str::from_utf8(name).map_err(|_| "field name is not text".to_string())?;
        let known = field(msg, name);
        self.skip_space();
        let colon = self.eat(b':');
        self.skip_space();
        if self.peek() == Some(b'[') {
            if !colon {
                return Err(format!("expected ':' before the list of field {name}"));
            }
            self.pos += 1;
            if self.eat(b']') {
                return Ok(());
            }
            loop {
                self.value(known, depth, out)?;
                if self.eat(b']') {
                    return Ok(());
                }
                if !self.eat(b',') {
                    return Err(format!("expected ',' or ']' in the list of field {name}"));
                }
            }
        }
        if !colon && !matches!(self.peek(), Some(b'{' | b'<')) {
            return Err(format!("expected ':' after field {name}"));
        }
        self.value(known, depth, out)
    }

    /// One value of a field: a message, or a scalar; encoded when the field is read.
    fn value(&mut self, known: Option<(u32, Kind)>, depth: u32, out: &mut Vec<u8>) -> R<()> {
        self.skip_space();
        if let Some(open @ (b'{' | b'<')) = self.peek() {
            self.pos += 1;
            let close = if open == b'{' { b'}' } else { b'>' };
            return match known {
                Some((number, Kind::Message(m))) => {
                    let mut sub = Vec::new();
                    let res = self.message(m, Some(close), depth + 1, &mut sub);
                    // Even a broken message is kept up to its error.
                    put_len(number, &sub, out);
                    res
                }
                Some(_) => Err("a message where a scalar was expected".into()),
                None => self.message(Msg::Empty, Some(close), depth + 1, &mut Vec::new()),
            };
        }
        match known {
            Some((_, Kind::Message(_))) => Err("a scalar where a message was expected".into()),
            Some((number, Kind::Str)) => {
                let s = self.strings()?.ok_or_else(|| "expected a string".to_string())?;
                put_len(number, &s, out);
                Ok(())
            }
            Some((number, Kind::Int)) => {
                let v = self.integer()?;
                put_varint(u64::from(number) << 3, out);
                put_varint(v, out);
                Ok(())
            }
            None => self.skip_scalar(),
        }
    }

    /// `[name]` fields: an expanded `Any` (`[host/Type] {...}`) or an extension; `Any` of an
    /// AssetFileDef is kept, everything else is skipped.
    fn extension(&mut self, msg: Msg, depth: u32, out: &mut Vec<u8>) -> R<()> {
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c != b']') {
            if self.pos - start > 1024 {
                return Err("extension name too long".into());
            }
            self.pos += 1;
        }
        let name: String = String::from_utf8_lossy(self.s.get(start..self.pos).unwrap_or_default())
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !self.eat(b']') {
            return Err("unterminated extension name".into());
        }
        let asset = msg == Msg::Any && name.ends_with("/tensorflow.AssetFileDef");
        self.eat(b':');
        self.skip_space();
        if asset && matches!(self.peek(), Some(b'{' | b'<')) {
            let mut value = Vec::new();
            let res = self.value(Some((2, Kind::Message(Msg::AssetFileDef))), depth, &mut value);
            put_len(1, b"type.googleapis.com/tensorflow.AssetFileDef", out);
            out.extend_from_slice(&value);
            return res;
        }
        self.value(None, depth, &mut Vec::new())
    }

    fn skip_scalar(&mut self) -> R<()> {
        self.skip_space();
        match self.peek() {
            Some(b'"' | b'\'') => self.strings().map(|_| ()),
            Some(b'-') => {
                self.pos += 1;
                self.skip_space();
                self.skip_scalar()
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.ident().map(|_| ()).ok_or_else(String::new),
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                self.number_token();
                Ok(())
            }
            _ => Err("expected a value".into()),
        }
    }

    fn number_token(&mut self) -> &'a [u8] {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let exp_sign = matches!(c, b'+' | b'-')
                && self.pos > start
                && matches!(self.s.get(self.pos - 1), Some(b'e' | b'E'))
                && !self.s.get(start..self.pos).is_some_and(|t| t.starts_with(b"0x") || t.starts_with(b"0X"));
            if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.s.get(start..self.pos).unwrap_or_default()
    }

    fn integer(&mut self) -> R<u64> {
        self.skip_space();
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
            self.skip_space();
        }
        let tok = self.number_token();
        let text = std::str::from_utf8(tok).map_err(|_| "bad integer".to_string())?;
        let v = if let Some(h) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            u64::from_str_radix(h, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            u64::from_str_radix(text.get(1..).unwrap_or_default(), 8)
        } else {
            text.parse::<u64>()
        }
        .map_err(|_| format!("bad integer {}", super::quote(text)))?;
        Ok(if neg { v.wrapping_neg() } else { v })
    }

    /// One or more adjacent string literals, concatenated; `None` when there is none.
    fn strings(&mut self) -> R<Option<Vec<u8>>> {
        let mut out: Option<Vec<u8>> = None;
        loop {
            self.skip_space();
            let Some(q @ (b'"' | b'\'')) = self.peek() else { return Ok(out) };
            self.pos += 1;
            let buf = out.get_or_insert_with(Vec::new);
            loop {
                let c = self.peek().ok_or_else(|| "unterminated string".to_string())?;
                self.pos += 1;
                match c {
                    b'\n' => return Err("newline in a string".into()),
                    b'\\' => self.escape(buf)?,
                    c if c == q => break,
                    c => buf.push(c),
                }
            }
        }
    }

    /// One escape sequence (after the backslash), as `io::Tokenizer::ParseStringAppend` and
    /// `text_encoding.CUnescape` read it.
    fn escape(&mut self, buf: &mut Vec<u8>) -> R<()> {
        let c = self.peek().ok_or_else(|| "unterminated escape".to_string())?;
        self.pos += 1;
        let simple = match c {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' | b'?' | b'\'' | b'"' => Some(c),
            _ => None,
        };
        if let Some(b) = simple {
            buf.push(b);
            return Ok(());
        }
        match c {
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                buf.push(v as u8);
            }
            b'x' | b'X' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match self.peek().and_then(|d| (d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            self.pos += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    return Err("\\x without hex digits".into());
                }
                buf.push(v as u8);
            }
            b'u' | b'U' => {
                let digits = if c == b'u' { 4 } else { 8 };
                let mut v = 0u32;
                for _ in 0..digits {
                    let d = self
                        .peek()
                        .and_then(|d| (d as char).to_digit(16))
                        .ok_or_else(|| "short unicode escape".to_string())?;
                    v = v.checked_mul(16).and_then(|x| x.checked_add(d)).ok_or("unicode escape too large")?;
                    self.pos += 1;
                }
                let ch = char::from_u32(v).ok_or_else(|| format!("invalid unicode escape {v:x}"))?;
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
            _ => return Err(format!("invalid escape '\\{}'", c as char)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots() {
        assert_eq!(root_of(b"saved_model_schema_version: 1\nmeta_graphs {"), Some(Root::SavedModel));
        assert_eq!(root_of(b"# comment\n  meta_graphs{"), Some(Root::SavedModel));
        assert_eq!(root_of(b"node {\n  name: \"x\""), Some(Root::Graph));
        assert_eq!(root_of(b"meta_info_def <"), Some(Root::MetaGraph));
        assert_eq!(root_of(b"version: 3\n"), None);
        assert_eq!(root_of(b"hello world"), None);
        assert_eq!(root_of(b"{\"node\": 1}"), None);
    }

    #[test]
    fn strings_and_escapes() {
        let t = br#"node { name: "a" 'b' op: "Py\x46u\156c" input: "\u00e9\"" }"#;
        let bin = transcode(t, Root::Graph).unwrap();
        let mut want = Vec::new();
        let mut node = Vec::new();
        put_len(1, b"ab", &mut node);
        put_len(2, b"PyFunc", &mut node);
        put_len(3, "é\"".as_bytes(), &mut node);
        put_len(1, &node, &mut want);
        assert_eq!(bin, want);
    }

    #[test]
    fn skips_unknown_and_lists() {
        let t = b"node < name: 'x' op: 'Const' attr { key: 'dtype' value { type: DT_STRING } }\n\
                  attr { key: 'value' value { tensor { dtype: DT_STRING tensor_shape { dim { size: -1 } } \
                  string_val: ['p', \"q\"] float_val: [1.5e-3, -inf, 0x1f] } } } experimental_debug_info {} >";
        let bin = transcode(t, Root::Graph).unwrap();
        assert!(bin.windows(1).any(|w| w == b"p") && bin.windows(5).any(|w| w == b"Const"));
    }

    #[test]
    fn errors_keep_what_came_before() {
        let (bin, e) = transcode(b"node { name: 'a' op: 'PyFunc' } node { name: 'b' op: \"x", Root::Graph).unwrap_err();
        assert!(e.what.contains("unterminated"), "{e:?}");
        assert!(bin.windows(6).any(|w| w == b"PyFunc"));
        for bad in [&b"node { op: 'x'"[..], b"node { op 'x' }", b"node { op: '\\z' }", b"node { op: { } }", b"}"] {
            assert!(transcode(bad, Root::Graph).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn any_expanded() {
        let t = b"collection_def { key: 'saved_model_assets' value { any_list { value { \
                  [type.googleapis.com/tensorflow.AssetFileDef] { tensor_info { name: 'c:0' } filename: 'v.txt' } } } } }";
        let bin = transcode(t, Root::MetaGraph).unwrap();
        assert!(bin.windows(5).any(|w| w == b"v.txt"));
        assert!(bin.windows(3).any(|w| w == b"c:0"));
    }

    #[test]
    fn depth_is_bounded() {
        let t = "node { attr { value { func { ".repeat(100);
        assert!(transcode(t.as_bytes(), Root::Graph).is_err());
    }
}

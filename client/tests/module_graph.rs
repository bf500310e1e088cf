//! No import circle between the files of `client/src` (issue 15): every
//! file is one module, and a file that names another through a
//! `crate::…`, `super::…`, `self::…` or child-module path depends on it.
//! The dependencies must form no cycle, so each file can be read, and
//! tested, knowing only the files below it.
//!
//! What counts as a dependency, and what does not:
//! - `mod child;` declares a file; it is not a use of it.
//! - `pub use …` / `pub(crate) use …` re-exports a name; a path through the
//!   re-export is resolved to the file that defines it (lib.rs is the
//!   crate's facade, so `crate::Account` is a use of account.rs).
//! - Comments, doc comments and string literals are not code.
//! - A path resolves to the deepest file module it names
//!   (`crate::groups::send::send_group` is groups/send.rs); an inline
//!   `mod tests { … }` belongs to its file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path: `[]` is the crate root, `["groups", "send"]` is
/// groups/send.rs.
type ModPath = Vec<String>;

/// One dependency: from one file to another, and the path that made it.
#[derive(Debug, Clone)]
struct Edge {
    to: ModPath,
    via: String,
}

/// One source file, parsed into tokens.
struct SourceFile {
    module: ModPath,
    tokens: Vec<String>,
}

/// The files of a crate and the dependencies between them.
struct Graph {
    files: BTreeMap<ModPath, String>,
    edges: BTreeMap<ModPath, Vec<Edge>>,
}

/// The module a file under `src/` is (lib.rs is the root, x/mod.rs is x).
fn module_of(relative: &Path) -> ModPath {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let Some(last) = parts.pop() else {
        return Vec::new();
    };
    let stem = last.trim_end_matches(".rs");
    if !(parts.is_empty() && stem == "lib" || stem == "mod") {
        parts.push(stem.to_owned());
    }
    parts
}

fn label(module: &ModPath, files: &BTreeMap<ModPath, String>) -> String {
    files
        .get(module)
        .cloned()
        .unwrap_or_else(|| format!("crate::{}", module.join("::")))
}

/// The code of `source` with comments and string/char literals blanked.
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (i == 0 || !ident(chars[i - 1]) || chars[i - 1] == 'b')
            && matches!(next, Some('"' | '#'))
        {
            // A raw string r"…", r#"…"#, br#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Identifiers, `::` and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_owned());
            i += 2;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The paths a use tree (or an expression path) starting at `tokens[i]`
/// names, each with the name it is known by (the last segment, or the
/// `as` rename), and the index after it.
fn parse_tree(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
) -> (Vec<(Vec<String>, String)>, usize) {
    let mut leaves = Vec::new();
    while let Some(token) = tokens.get(i) {
        if token == "{" {
            i += 1;
            while tokens.get(i).is_some_and(|t| t != "}") {
                if tokens[i] == "," {
                    i += 1;
                    continue;
                }
                let (sub, next) = parse_tree(tokens, i, prefix.clone());
                leaves.extend(sub);
                i = if next == i { i + 1 } else { next };
            }
            return (leaves, i + 1);
        }
        if token == "*" {
            leaves.push((prefix, "*".to_owned()));
            return (leaves, i + 1);
        }
        if !is_ident(token) {
            break;
        }
        if token == "self" && tokens.get(i + 1).is_none_or(|t| t != "::") {
            let name = prefix.last().cloned().unwrap_or_default();
            leaves.push((prefix, name));
            return (leaves, i + 1);
        }
        prefix.push(token.clone());
        i += 1;
        if tokens.get(i).is_some_and(|t| t == "::") {
            i += 1;
            continue;
        }
        let mut name = token.clone();
        if tokens.get(i).is_some_and(|t| t == "as") {
            if let Some(rename) = tokens.get(i + 1) {
                name = rename.clone();
            }
            i += 2;
        }
        leaves.push((prefix, name));
        return (leaves, i);
    }
    let name = prefix.last().cloned().unwrap_or_default();
    if !prefix.is_empty() {
        leaves.push((prefix, name));
    }
    (leaves, i)
}

/// One path found in a file, relative to the (inline) module it is in.
struct Reference {
    scope: ModPath,
    path: Vec<String>,
    name: String,
    reexport: bool,
}

impl Graph {
    /// Reads every `.rs` file under `src`.
    fn read(src: &Path) -> Graph {
        let mut paths = Vec::new();
        collect_rs(src, &mut paths);
        let sources = paths
            .iter()
            .map(|path| {
                let relative = path.strip_prefix(src).expect("under src");
                let text = std::fs::read_to_string(path).expect("readable source");
                (relative.to_string_lossy().into_owned(), text)
            })
            .collect::<Vec<_>>();
        Graph::build(&sources)
    }

    /// Builds the graph from (path under src, contents) pairs.
    fn build(sources: &[(String, String)]) -> Graph {
        let files: BTreeMap<ModPath, String> = sources
            .iter()
            .map(|(path, _)| (module_of(Path::new(path)), path.clone()))
            .collect();
        let parsed: Vec<SourceFile> = sources
            .iter()
            .map(|(path, text)| SourceFile {
                module: module_of(Path::new(path)),
                tokens: tokenize(&strip(text)),
            })
            .collect();
        let mut references: BTreeMap<ModPath, Vec<Reference>> = BTreeMap::new();
        for file in &parsed {
            references.insert(file.module.clone(), scan(file, &files));
        }
        // Re-exports: (module, name) → the absolute path it stands for.
        let mut aliases: BTreeMap<(ModPath, String), Vec<String>> = BTreeMap::new();
        for refs in references.values() {
            for r in refs.iter().filter(|r| r.reexport) {
                if let Some(absolute) = absolute(&r.scope, &r.path, &files) {
                    aliases.insert((r.scope.clone(), r.name.clone()), absolute);
                }
            }
        }
        let mut edges: BTreeMap<ModPath, Vec<Edge>> = BTreeMap::new();
        for (module, refs) in &references {
            let out = edges.entry(module.clone()).or_default();
            for r in refs.iter().filter(|r| !r.reexport) {
                let Some(absolute) = absolute(&r.scope, &r.path, &files) else {
                    continue;
                };
                let to = resolve(&absolute, &files, &aliases, 0);
                if to != *module && files.contains_key(&to) {
                    out.push(Edge {
                        to,
                        via: r.path.join("::"),
                    });
                }
            }
        }
        Graph { files, edges }
    }

    /// Every cycle's strongly connected set of files, each as one concrete
    /// cycle `a → b → … → a` with the paths that make its edges.
    fn cycles(&self) -> Vec<String> {
        let mut found = Vec::new();
        for component in self.components() {
            if component.len() < 2 {
                continue;
            }
            let start = component[0].clone();
            let members: BTreeSet<&ModPath> = component.iter().collect();
            // Shortest way from start back to start inside the component.
            let mut previous: BTreeMap<ModPath, (ModPath, String)> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start.clone()]);
            let mut closing = None;
            while let Some(node) = queue.pop_front() {
                for edge in self.edges.get(&node).into_iter().flatten() {
                    if !members.contains(&edge.to) {
                        continue;
                    }
                    if edge.to == start {
                        closing = Some((node.clone(), edge.via.clone()));
                        break;
                    }
                    if !previous.contains_key(&edge.to) {
                        previous.insert(edge.to.clone(), (node.clone(), edge.via.clone()));
                        queue.push_back(edge.to.clone());
                    }
                }
                if closing.is_some() {
                    break;
                }
            }
            let Some((mut node, via)) = closing else {
                continue;
            };
            let mut steps = vec![format!(
                "{} → {} ({via})",
                label(&node, &self.files),
                label(&start, &self.files)
            )];
            while node != start {
                let (from, via) = previous[&node].clone();
                steps.push(format!(
                    "{} → {} ({via})",
                    label(&from, &self.files),
                    label(&node, &self.files)
                ));
                node = from;
            }
            steps.reverse();
            let all: Vec<String> = component.iter().map(|m| label(m, &self.files)).collect();
            found.push(format!(
                "files in a circle: {}\n  one cycle: {}",
                all.join(", "),
                steps.join(", ")
            ));
        }
        found
    }

    /// Strongly connected components (Tarjan).
    fn components(&self) -> Vec<Vec<ModPath>> {
        struct State<'a> {
            graph: &'a Graph,
            index: BTreeMap<ModPath, usize>,
            low: BTreeMap<ModPath, usize>,
            stack: Vec<ModPath>,
            on_stack: BTreeSet<ModPath>,
            out: Vec<Vec<ModPath>>,
        }
        fn visit(s: &mut State<'_>, node: &ModPath) {
            let n = s.index.len();
            s.index.insert(node.clone(), n);
            s.low.insert(node.clone(), n);
            s.stack.push(node.clone());
            s.on_stack.insert(node.clone());
            let targets: Vec<ModPath> = s
                .graph
                .edges
                .get(node)
                .into_iter()
                .flatten()
                .map(|e| e.to.clone())
                .collect();
            for to in targets {
                if !s.index.contains_key(&to) {
                    visit(s, &to);
                    let low = s.low[node].min(s.low[&to]);
                    s.low.insert(node.clone(), low);
                } else if s.on_stack.contains(&to) {
                    let low = s.low[node].min(s.index[&to]);
                    s.low.insert(node.clone(), low);
                }
            }
            if s.low[node] == s.index[node] {
                let mut component = Vec::new();
                while let Some(top) = s.stack.pop() {
                    s.on_stack.remove(&top);
                    let done = top == *node;
                    component.push(top);
                    if done {
                        break;
                    }
                }
                component.sort();
                s.out.push(component);
            }
        }
        let mut state = State {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for node in self.files.keys() {
            if !state.index.contains_key(node) {
                visit(&mut state, node);
            }
        }
        state.out
    }

    /// The graph as `file → file, file` lines (printed by the test).
    fn describe(&self) -> String {
        let mut lines = Vec::new();
        for (from, edges) in &self.edges {
            let to: BTreeSet<String> = edges.iter().map(|e| label(&e.to, &self.files)).collect();
            let to: Vec<String> = to.into_iter().collect();
            lines.push(format!("{} → {}", label(from, &self.files), to.join(", ")));
        }
        lines.join("\n")
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths one file names, with the inline module each is in.
fn scan(file: &SourceFile, files: &BTreeMap<ModPath, String>) -> Vec<Reference> {
    let tokens = &file.tokens;
    let mut out = Vec::new();
    // Inline modules: (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].as_str();
        let scope: ModPath = file
            .module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        let after_colons = i > 0 && tokens[i - 1] == "::";
        match token {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                inline.push((tokens[i + 1].clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "use" => {
                // `pub use`, `pub(crate) use`, `pub(super) use`, `pub(in …) use`.
                let mut j = i;
                if j > 0 && tokens[j - 1] == ")" {
                    while j > 0 && tokens[j - 1] != "(" {
                        j -= 1;
                    }
                    j = j.saturating_sub(1);
                }
                let reexport = j > 0 && tokens[j - 1] == "pub";
                let (leaves, next) = parse_tree(tokens, i + 1, Vec::new());
                for (path, name) in leaves {
                    if is_local(&path, &scope, files) {
                        out.push(Reference {
                            scope: scope.clone(),
                            path,
                            name,
                            reexport,
                        });
                    }
                }
                i = next;
                continue;
            }
            _ => {}
        }
        let starts_path = !after_colons
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && is_ident(token)
            && is_local(&[token.to_owned()], &scope, files);
        if starts_path {
            let (leaves, next) = parse_tree(tokens, i, Vec::new());
            for (path, name) in leaves {
                out.push(Reference {
                    scope: scope.clone(),
                    path,
                    name,
                    reexport: false,
                });
            }
            i = next;
            continue;
        }
        i += 1;
    }
    out
}

/// Whether a path starts inside this crate: `crate`, `super`, `self`, or
/// a child file module of `scope`.
fn is_local(path: &[String], scope: &ModPath, files: &BTreeMap<ModPath, String>) -> bool {
    match path.first().map(String::as_str) {
        Some("crate" | "super" | "self") => true,
        Some(first) => {
            let mut child = scope.clone();
            child.push(first.to_owned());
            files.contains_key(&child)
        }
        None => false,
    }
}

/// The absolute path (from the crate root) `path` names inside `scope`.
fn absolute(
    scope: &ModPath,
    path: &[String],
    files: &BTreeMap<ModPath, String>,
) -> Option<Vec<String>> {
    let mut segments = path.iter().peekable();
    let mut base: Vec<String> = match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("self") => {
            segments.next();
            scope.clone()
        }
        Some("super") => scope.clone(),
        Some(_) => scope.clone(),
        None => return None,
    };
    while segments.peek().is_some_and(|s| *s == "super") {
        segments.next();
        base.pop()?;
    }
    base.extend(segments.cloned());
    let _ = files;
    Some(base)
}

/// The file an absolute path lands in, following re-exports.
fn resolve(
    absolute: &[String],
    files: &BTreeMap<ModPath, String>,
    aliases: &BTreeMap<(ModPath, String), Vec<String>>,
    hops: usize,
) -> ModPath {
    let mut module: ModPath = Vec::new();
    for (k, segment) in absolute.iter().enumerate() {
        let mut deeper = module.clone();
        deeper.push(segment.clone());
        if files.contains_key(&deeper) {
            module = deeper;
            continue;
        }
        if hops < 8
            && let Some(target) = aliases.get(&(module.clone(), segment.clone()))
        {
            let mut through: Vec<String> = target.clone();
            through.extend(absolute[k + 1..].iter().cloned());
            return resolve(&through, files, aliases, hops + 1);
        }
        break;
    }
    module
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The client's files import each other in no circle.
#[test]
fn client_src_has_no_import_cycle() {
    let graph = Graph::read(&src());
    assert!(
        graph.files.len() > 10,
        "client/src not found: {}",
        src().display()
    );
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "client/src imports in a circle:\n{}\n\nthe whole graph:\n{}",
        cycles.join("\n"),
        graph.describe()
    );
}

fn fixture(files: &[(&str, &str)]) -> Graph {
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    Graph::build(&sources)
}

/// The check finds a circle of three files and names each step.
#[test]
fn a_circle_of_three_files_is_found_and_named() {
    let graph = fixture(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::Thing;\n"),
        ("a.rs", "use crate::b::helper;\npub struct Thing;\n"),
        ("b.rs", "pub fn helper() { crate::c::other(); }\n"),
        ("c.rs", "pub fn other() -> crate::Thing { crate::Thing }\n"),
    ]);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains("a.rs, b.rs, c.rs"), "{}", cycles[0]);
    assert!(
        cycles[0].contains("c.rs → a.rs (crate::Thing)"),
        "the re-export leads to a.rs: {}",
        cycles[0]
    );
}

/// Brace groups, `super::`, `self` and child paths are dependencies too.
#[test]
fn use_trees_super_and_child_paths_are_followed() {
    let graph = fixture(&[
        ("lib.rs", "mod g;\nmod x;\n"),
        (
            "g/mod.rs",
            "mod send;\nmod state;\nfn f() { send::go(); }\n",
        ),
        (
            "g/send.rs",
            "use super::{state::{self, Row}, Id};\npub fn go() {}\n",
        ),
        ("g/state.rs", "pub struct Row;\n"),
        ("x.rs", "use crate::{g::send as s};\n"),
    ]);
    let edges = |from: &[&str]| -> BTreeSet<String> {
        let key: ModPath = from.iter().map(|s| (*s).to_owned()).collect();
        graph.edges[&key]
            .iter()
            .map(|e| label(&e.to, &graph.files))
            .collect()
    };
    assert_eq!(
        edges(&["g", "send"]),
        BTreeSet::from(["g/mod.rs".to_owned(), "g/state.rs".to_owned()])
    );
    assert_eq!(edges(&["g"]), BTreeSet::from(["g/send.rs".to_owned()]));
    assert_eq!(edges(&["x"]), BTreeSet::from(["g/send.rs".to_owned()]));
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "g/mod.rs ↔ g/send.rs: {cycles:?}");
}

/// Comments, strings and an inline test module's `super::*` make no edge;
/// `mod x;` declares, it does not use.
#[test]
fn comments_strings_and_test_modules_are_not_dependencies() {
    let graph = fixture(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "//! See [`crate::b::f`].\n/* crate::b::f() */\n\
             fn g() -> &'static str { \"crate::b::f\" }\n\
             fn h() -> char { '\"' }\n\
             #[cfg(test)]\nmod tests { use super::*; fn t() { let _ = g(); } }\n",
        ),
        ("b.rs", "pub fn f() { crate::a::g(); }\n"),
    ]);
    assert!(graph.cycles().is_empty(), "{}", graph.describe());
    let a: ModPath = vec!["a".to_owned()];
    assert!(graph.edges[&a].is_empty(), "{:?}", graph.edges[&a]);
}

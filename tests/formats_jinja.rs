mod formats_common;
use formats_common::*;
use modelgate::finding::Verdict;
use modelgate::formats::jinja::check_template;

const TEMPLATES: &[&str] = &[
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}{%- set loop_messages = messages[1:] %}{%- else %}{%- set system_message = \"\" %}{%- set loop_messages = messages %}{%- endif %}{{- bos_token }}{%- for message in loop_messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}",
];

fn tokenizer_config(template: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"bos_token": "<s>", "model_max_length": 4096, "chat_template": template}))
        .unwrap()
}

#[test]
fn tokenizer_config_templates_are_checked() {
    let r = scan(&tokenizer_config(TEMPLATES[0]));
    assert!(r.findings.is_empty(), "{r:#?}");
    let r = scan(&tokenizer_config(TEMPLATES[2]));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "chat-template-sandbox-escape").starts_with("chat_template: {{ cycler"));
    let named = serde_json::json!({"chat_template": [{"name": "default", "template": TEMPLATES[1]},
        {"name": "tool_use", "template": "{{ x|attr('__class__') }}"}]});
    let r = scan(&serde_json::to_vec(&named).unwrap());
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "chat-template-sandbox-escape").starts_with("chat_template[tool_use]"));
}

#[test]
fn mutated_templates_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces =
        ["{{", "}}", "{%", "%}", "{#", "#}", "'", "\"", "(", ")", "[", "]", "|", ".", "-", "\\", "__", "é", "\u{0}"];
    for t in TEMPLATES {
        for _ in 0..400 {
            let mut s: Vec<char> = t.chars().collect();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (s.len() + 1);
                match next() % 3 {
                    0 if at < s.len() => {
                        s.remove(at);
                    }
                    _ => {
                        let p = pieces[(next() as usize) % pieces.len()];
                        for (k, c) in p.chars().enumerate() {
                            s.insert(at + k, c);
                        }
                    }
                }
            }
            let s: String = s.into_iter().collect();
            let _ = check_template(&s, "t");
        }
    }
    for deep in ["[".repeat(100_000), "(".repeat(100_000), "{{".repeat(50_000), "not ".repeat(50_000)] {
        let _ = check_template(&format!("{{{{ {deep} }}}}"), "t");
    }
}

/// Escapes: each renders the marker (an environment variable only Python internals reach)
/// in at least one jinja2 version transformers accepts, sandboxed or not.
const ESCAPES: &[&str] = &[
    "{{ '{0.__init__.__globals__[os].environ[MG_MARKER]}'|attr('format')(cycler) }}",
    "{{ ('{0.__init__.__glo' ~ 'bals__[os].environ[MG_MARKER]}')|attr('format')(joiner) }}",
    "{% set f = '{0.__init__.__globals__[os].environ[MG_MARKER]}' %}{{ f|attr('for' ~ 'mat')(cycler) }}",
    "{{ ('{x.__init__.__globals__[os].environ[MG_MARKER]}'|attr('format_map'))({'x': cycler}) }}",
    "{{ '{0.\\x5f_init__.__globals__[os].environ[MG_MARKER]}'|attr('format')(cycler) }}",
    "{% set ns = namespace(f='{0.__init__.__globals__[os].environ[MG_MARKER]}') %}{{ ns.f|attr('format')(cycler) }}",
    "{{ cycler.__init__.__globals__.os.environ.MG_MARKER }}",
    "{{ cycler|attr('\\x5f\\x5finit\\x5f\\x5f')|attr('\\x5f\\x5fglobals\\x5f\\x5f')|attr('get')('os')|attr('environ')|attr('get')('MG_MARKER') }}",
    "{% set u = '%c'|format(95) %}{% set i = u*2 ~ 'init' ~ u*2 %}{% set g = u*2 ~ 'globals' ~ u*2 %}{{ (cycler|attr(i)|attr(g))['os'].environ['MG_MARKER'] }}",
    "{{ (cycler|attr('__tini__'|reverse)|attr(['__glo','bals__']|join))['os']['environ']['MG_MARKER'] }}",
    "{% set d = dict(__init__=1, __globals__=2)|list %}{{ (cycler|attr(d|first)|attr(d|last)).os.environ.MG_MARKER }}",
    "{% macro u() %}__{% endmacro %}{{ (cycler|attr(u() ~ 'init' ~ u())|attr(u() ~ 'globals' ~ u())).os.environ.MG_MARKER }}",
    "{% set i %}__init__{% endset %}{% set g %}__globals__{% endset %}{{ (cycler|attr(i)|attr(g)).os.environ.MG_MARKER }}",
    "{% for n in ['__init__'] %}{% for m in ['__globals__'] %}{{ (cycler|attr(n)|attr(m)).os.environ.MG_MARKER }}{% endfor %}{% endfor %}",
    "{% set ns = namespace(a='__init__') %}{% set ns.b = '__globals__' %}{{ (cycler|attr(ns.a)|attr(ns.b)).os.environ.MG_MARKER }}",
    "{{ (cycler|attr('__init__'[::1])|attr('__slabolg__'[::-1])).os.environ.MG_MARKER }}",
    "{% set u = (lipsum|string)[18] %}{{ (cycler|attr(u*2 ~ 'init' ~ u*2)|attr(u*2 ~ 'globals' ~ u*2)).os.environ.MG_MARKER }}",
    "{{ (cycler|attr('%s%s%s'|format('__','init','__'))|attr('%sglobals%s' % ('__','__'))).os.environ.MG_MARKER }}",
    "{{ (cycler|attr('XXinitXX'|replace('X','_'))|attr('XXglobalsXX'|replace('X','_'))).os.environ.MG_MARKER }}",
    "{{ [cycler]|map('attr','__init__')|map('attr','__globals__')|map(attribute='os')|map(attribute='environ')|map(attribute='MG_MARKER')|list }}",
    "{{ cycler['__init__']['__globals__']['os']['environ']['MG_MARKER'] }}",
    "{{ (cycler|attr('\\N{LOW LINE}\\N{LOW LINE}init\\N{LOW LINE}\\N{LOW LINE}')|attr('__globals__')).os.environ.MG_MARKER }}",
    "{{ (cycler|attr('\\137\\137init\\137\\137')|attr('\\137\\137globals\\137\\137')).os.environ.MG_MARKER }}",
    "{% macro m(a, b='__globals__') %}{{ (cycler|attr(a)|attr(b)).os.environ.MG_MARKER }}{% endmacro %}{{ m('__init__') }}",
    "{% set parts = {'i': '__init__', 'g': '__globals__'} %}{{ (cycler|attr(parts.get('i'))|attr(parts['g'])).os.environ.MG_MARKER }}",
    "{% set x = ['', '__init__'] %}{% set y = '__globals__' if x else '' %}{{ (cycler|attr(x[1])|attr(y)).os.environ.MG_MARKER }}",
];

/// Ordinary templates: they render in every version and modelgate finds nothing in them.
const BENIGN: &[&str] = &[
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}{%- set loop_messages = messages[1:] %}{%- else %}{%- set system_message = \"\" %}{%- set loop_messages = messages %}{%- endif %}{{- bos_token }}{%- for message in loop_messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}",
    "{%- set ns = namespace(sys='', n=0) -%}{%- for m in messages -%}{%- if m.role == 'system' -%}{%- set ns.sys = ns.sys ~ m.content -%}{%- else -%}{%- set ns.n = ns.n + 1 -%}{%- endif -%}{%- endfor -%}{{ '[SYS]' ~ ns.sys ~ '[/SYS]' if ns.sys }}{%- for m in messages if m.role != 'system' -%}{{ '<' ~ m.role|upper ~ '>' ~ m.content.split('</think>')[-1]|trim ~ '</' ~ m.role ~ '>' }}{%- if not loop.last %}\\n{% endif -%}{%- endfor -%}{{ '{:>3}'.format(ns.n) }}{% if add_generation_prompt %}<ASSISTANT>{% endif %}",
    "{% macro render(m) %}{{ m['role'] }}: {{ m['content'] }}{% endmacro %}{% set roles = {'user': 'U', 'assistant': 'A', 'system': 'S'} %}{% for m in messages %}{{ roles[m['role']] ~ '|' ~ render(m) }}{% if loop.index0 % 2 == 0 %}{{ loop.cycle('a', 'b') }}{% endif %}{% endfor %}{{ messages|map(attribute='role')|join(',') }}{{ messages|selectattr('role', 'equalto', 'user')|list|length }}{{ strftime_now('%Y') }}{{ tools|tojson if tools }}",
    // tool use as llama.cpp's Hermes / Command-R / functionary templates write it: a type map
    // looked up by a schema's `type`, a recursive macro over `items` / `additionalProperties`,
    // fields named by a list of pairs
    "{%- macro py_type(json_spec) %}{%- set basic_type_map = {'string': 'str', 'number': 'float', 'integer': 'int', 'boolean': 'bool'} %}{%- if basic_type_map[json_spec.type] is defined %}{{- basic_type_map[json_spec.type] }}{%- elif json_spec.type == 'array' %}{{- 'list[' + py_type(json_spec['items']) + ']' }}{%- elif json_spec.type == 'object' %}{%- if json_spec.additionalProperties is defined %}{{- 'dict[str, ' + py_type(json_spec.additionalProperties) + ']' }}{%- else %}{{- 'dict' }}{%- endif %}{%- else %}{{- 'Any' }}{%- endif %}{%- endmacro %}{%- for tool in tools %}{%- set fn = tool.function if tool.function is defined else tool %}{{- fn.name + '(' }}{%- for param_name, param_fields in fn.parameters.properties|items %}{{- param_name + ': ' + py_type(param_fields) }}{%- for field, field_name in [('maximum', 'Maximum'), ('minimum', 'Minimum'), ('maxLength', 'Maximum length')] %}{%- if field in param_fields %}{{ ' ' + field_name ~ '=' ~ param_fields[field] }}{%- endif %}{%- endfor %}{%- if param_name in fn.parameters.required %} (required){%- endif %}{%- if not loop.last %}{{- ', ' }}{%- endif %}{%- endfor %}{{- ') -> ' + (py_type(fn['return']) if fn['return'] is defined else 'None') + '\\n' }}{%- set defs = fn.parameter_definitions if fn.parameter_definitions is defined else {} %}{%- for k, v in defs|items %}{{ k ~ basic_type_map[v.type] }}{%- endfor %}{%- endfor %}{%- for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}<|assistant|>{%- endif %}",
];

fn jinja_dirs() -> Vec<std::path::PathBuf> {
    let root = std::env::var_os("MG_JINJA_DIR").map_or_else(|| "/opt/mg-jinja".into(), std::path::PathBuf::from);
    let mut dirs: Vec<_> = std::fs::read_dir(&root).into_iter().flatten().flatten().map(|e| e.path()).collect();
    dirs.sort();
    dirs
}

/// Render `templates` with the jinja2 in `dir` (tests/fixtures/jinja/render.py).
fn render(dir: &std::path::Path, mode: &str, templates: &[&str]) -> Vec<serde_json::Value> {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jinja/render.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .arg(mode)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(serde_json::to_string(templates).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// The real jinja2 (every version installed under /opt/mg-jinja by .ci/run: 3.1.0, 3.1.4,
/// 3.1.5, 3.1.6), sandboxed as transformers renders and unsandboxed as old llama-cpp-python
/// did, is the oracle: a template that prints the marker is dangerous in modelgate; the
/// ordinary templates render everywhere and are clean. jinja2 3.1.5's sandbox lets the
/// `|attr('format')` escapes through (CVE-2025-27516).
#[test]
fn real_jinja2_escapes_are_dangerous() {
    let dirs = jinja_dirs();
    if dirs.is_empty() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "jinja2 versions under /opt/mg-jinja are required when CI=true"
        );
        eprintln!("skipping: no jinja2 under /opt/mg-jinja");
        return;
    }
    let mut reached = vec![false; ESCAPES.len()];
    let mut sandbox_escapes = 0;
    for dir in &dirs {
        for mode in ["transformers", "unsandboxed"] {
            for (i, r) in render(dir, mode, ESCAPES).iter().enumerate() {
                if r["marker"] == true {
                    reached[i] = true;
                    sandbox_escapes += usize::from(mode == "transformers");
                }
            }
            for (t, r) in BENIGN.iter().zip(render(dir, mode, BENIGN)) {
                assert!(r["error"].is_null(), "{t}: {r}");
            }
        }
    }
    assert!(sandbox_escapes >= 3, "the sandbox escapes no longer reproduce: {sandbox_escapes}");
    for (t, hit) in ESCAPES.iter().zip(reached) {
        assert!(hit, "{t} reaches no marker in any jinja2");
        let f = check_template(t, "t");
        assert!(f.iter().any(|f| f.code == "chat-template-sandbox-escape"), "{t}: {f:#?}");
        let r = scan(&tokenizer_config(t));
        assert_eq!(r.verdict, Verdict::Dangerous, "{t}: {r:#?}");
    }
    for t in BENIGN {
        assert_eq!(check_template(t, "t"), Vec::new(), "{t}");
        let r = scan(&tokenizer_config(t));
        assert!(r.findings.is_empty(), "{r:#?}");
    }
}

/// Standalone templates (`chat_template.jinja`, `additional_chat_templates/*.jinja`) are
/// recognised by content: a chat template is a model file judged like any other; text with
/// tags that renders no chat is not a model unless it escapes.
#[test]
fn standalone_templates_are_judged_by_content() {
    for t in BENIGN {
        let r = scan(t.as_bytes());
        assert_safe(&r, "chat-template");
        assert_safe(&scan_stream(t.as_bytes()), "chat-template");
    }
    // Starting with text rather than a tag.
    let r = scan(format!("<|im_start|>system\nYou are helpful.<|im_end|>\n{}", BENIGN[1]).as_bytes());
    assert_safe(&r, "chat-template");
    for t in ESCAPES {
        let r = scan(t.as_bytes());
        assert_eq!(r.verdict, Verdict::Dangerous, "{t}: {r:#?}");
        assert_eq!(scan_stream(t.as_bytes()).verdict, Verdict::Dangerous, "{t}");
    }
    // An escape in text that renders no chat (and starts with a word) is still dangerous.
    let r = scan(b"Hello {{ cycler.__init__.__globals__.os.popen('id').read() }}");
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    // Other text with braces is not a model: a Helm chart, a Go template, prose.
    for t in [
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Values.name }}\n",
        "Use {{ and }} to escape.",
        "{% if x %}hi{% endif %}",
    ] {
        let r = scan(t.as_bytes());
        assert_eq!(r.verdict, Verdict::Unsupported, "{t}: {r:#?}");
    }
    // A chat template that cannot be parsed cannot be judged.
    let r = scan(b"{% for message in messages %}{{ message['content'] @@ }}{% endfor %}");
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    // A protocol 0 pickle that quotes a template is still read as a pickle.
    let r = scan(b"cos\nsystem\n(S'{{ messages }}'\ntR.");
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
}

/// `chat_template.json` and every shape transformers accepts for `chat_template`.
#[test]
fn every_chat_template_shape_is_checked() {
    let esc = ESCAPES[6];
    for v in [
        serde_json::json!({"chat_template": esc}),
        serde_json::json!({"chat_template": [{"name": "default", "template": BENIGN[0]}, {"name": "rag", "template": esc}]}),
        serde_json::json!({"chat_template": {"default": BENIGN[0], "tool_use": esc}}),
    ] {
        let r = scan(&serde_json::to_vec(&v).unwrap());
        assert_eq!(r.verdict, Verdict::Dangerous, "{v}: {r:#?}");
    }
    // Escaped in JSON (`\u005f`) and in the template (`\x5f`): both decoded.
    let doc = r#"{"chat_template": "{{ cycler|attr('\\x5f\\x5finit\\x5f\\x5f') }}", "x": NaN}"#;
    assert_eq!(scan(doc.as_bytes()).verdict, Verdict::Dangerous);
    let doc = r#"{"chat_template": "{{ cycler.\u005f_init__ }}"}"#;
    assert_eq!(scan(doc.as_bytes()).verdict, Verdict::Dangerous);
}

/// Templates past the size that is checked are errors, not safe.
#[test]
fn oversized_templates_are_errors() {
    let big = format!("{}{}", BENIGN[0], " ".repeat(5 << 20));
    let r = scan(&tokenizer_config(&big));
    assert_eq!(r.verdict, Verdict::Error, "{:?}", r.findings);
    assert!(has(&r, "chat-template-unparsed"));
}

/// Text with `{{ }}` that renders no chat variable is no model file unless it escapes through
/// `_`-prefixed names: CI workflows (`matrix.os`), Tempita / Cython sources (which jinja2
/// cannot parse, and which define `__init__`), web templates with includes. A chat template
/// with the same constructs stays judged, and escape gadgets stay dangerous in any text.
#[test]
fn text_that_is_no_chat_template_is_not_a_model() {
    for t in [
        "name: CI\non: [push]\njobs:\n  build:\n    runs-on: ${{ matrix.os }}\n    strategy:\n      matrix:\n        os: [ubuntu-latest, macos-latest]\n    steps:\n      - run: echo ${{ runner.os }} ${{ env.popen }}\n      - if: ${{ github.event_name == 'push' && contains(github.ref, 'main') }}\n        run: make\n",
        "\"\"\"\nTemplate for each dtype\n\"\"\"\n{{py:\n\ndtypes = [('float64', 'Float64'), ('int64', 'Int64')]\n}}\n\n{{for name, dtype in dtypes}}\ncdef class {{name}}HashTable:\n    def __cinit__(self, size_hint=1):\n        pass\n    def __init__(self):\n        self.__class__.__name__\n    def __call__(self): pass\n{{endfor}}\n",
        "<html>{% include 'header.html' %}{% for item in items %}<p>{{ item.title|e }} {{ item[key] }}</p>{% endfor %}{{ config.os }}{{ eval }}</html>",
        "{% extends 'base.html' %}{% block body %}{{ self.title|attr(name) }}{% endblock %}",
    ] {
        let r = scan(t.as_bytes());
        assert_eq!(r.verdict, Verdict::Unsupported, "{t}: {r:#?}");
        assert_eq!(r.format, "unknown", "{t}");
        assert_eq!(scan_stream(t.as_bytes()).verdict, Verdict::Unsupported, "{t}");
    }
    // escapes through dunders stay dangerous in any text, parsed or not
    for t in [
        "name: CI\nruns-on: ${{ matrix.os }}\nrun: ${{ cycler.__init__.__globals__.os.popen('id').read() }}\n",
        "{{py: x = 1}}\n{{ joiner.__init__.__globals__ }}\n",
        "{{py:\n}}{% set x = ''.__class__.__mro__[1].__subclasses__() %}",
        "Hello {{ (lipsum|string)[18] }} {{ x|attr(('%c'|format(95))*2 ~ 'class' ~ ('%c'|format(95))*2) }}",
    ] {
        let r = scan(t.as_bytes());
        assert_eq!(r.verdict, Verdict::Dangerous, "{t}: {r:#?}");
    }
    // the same names in a chat template are judged
    let t = "{% for message in messages %}{{ message.os.popen('id') }}{% endfor %}";
    assert_eq!(scan(t.as_bytes()).verdict, Verdict::Dangerous);
    let t = "{% include 'x' %}{% for message in messages %}{{ message.content }}{% endfor %}";
    assert_eq!(scan(t.as_bytes()).verdict, Verdict::Suspicious);
    // dynamic names built to reach a dunder stay flagged in chat templates
    let t = "{% for message in messages %}{{ message|attr(message.content ~ 'globals' ~ message.role) }}{% endfor %}";
    assert_eq!(scan(t.as_bytes()).verdict, Verdict::Dangerous);
}

/// A template's first byte may also be a pickle opcode (`c`, `r`, `t`, `S`, `(`, ...): once the
/// pickle probe finds no pickle, the text is still judged as a template (transformers reads
/// `chat_template.jinja` whatever it starts with).
#[test]
fn templates_that_start_like_a_pickle_opcode_are_judged() {
    for lead in ["c", "r", "t", "S", "(", "]", "}", "I", "L", "F", "V", "X", "0", "."] {
        let t = format!("{lead}{{{{ cycler.__init__.__globals__.os.popen('id').read() }}}}");
        let r = scan(t.as_bytes());
        assert_eq!(r.verdict, Verdict::Dangerous, "{t}: {r:#?}");
        assert_eq!(r.format, "chat-template", "{t}");
        let t = format!("{lead} {{% for message in messages %}}{{{{ message['content'] }}}}{{% endfor %}}");
        let r = scan(t.as_bytes());
        assert_eq!(r.format, "chat-template", "{t}: {r:#?}");
        assert_eq!(r.verdict, Verdict::Safe, "{t}: {r:#?}");
    }
}

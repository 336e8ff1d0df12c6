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

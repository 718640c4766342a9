//! docker's `--format TEMPLATE`: Go's text/template (the `gotmpl` port)
//! over the JSON object the command describes, with the functions docker
//! adds to Go's (`json`, `join`, `split`, `lower`, `upper`, `title`).

use anyhow::{anyhow, Result};
use gotmpl::{MissingKey, Template, TemplateError, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A parsed `--format` template.
pub struct Format(Template);

impl Format {
    /// Parses `source`; a malformed template is the user's error, named as
    /// docker names it.
    pub fn parse(source: &str) -> Result<Format> {
        let template = Template::new("format")
            // A field the object lacks is a mistake (a misspelt name) to
            // report, as docker's inspect reports it on its JSON map and
            // its lists on their row types; a field there with a null
            // value still prints Go's `<no value>`.
            .missing_key(MissingKey::Error)
            .func("json", |args| {
                let [v] = exactly("json", args)?;
                Ok(text(crate::output::go_json(&to_json(v))))
            })
            .func("join", |args| {
                let [list, sep] = exactly("join", args)?;
                let items: Vec<String> = match list {
                    Value::List(items) => items.iter().map(ToString::to_string).collect(),
                    other => vec![other.to_string()],
                };
                Ok(text(items.join(&sep.to_string())))
            })
            .func("split", |args| {
                let [s, sep] = exactly("split", args)?;
                let (s, sep) = (s.to_string(), sep.to_string());
                Ok(Value::List(s.split(sep.as_str()).map(text).collect()))
            })
            .func("lower", |args| {
                let [s] = exactly("lower", args)?;
                Ok(text(s.to_string().to_lowercase()))
            })
            .func("upper", |args| {
                let [s] = exactly("upper", args)?;
                Ok(text(s.to_string().to_uppercase()))
            })
            .func("title", |args| {
                let [s] = exactly("title", args)?;
                Ok(text(title(&s.to_string())))
            })
            .parse(source)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Format(template))
    }

    /// The template executed over `data`.
    pub fn render(&self, data: &serde_json::Value) -> Result<String> {
        self.0
            .execute_to_string(&to_value(data))
            .map_err(|e| anyhow!("template: {e}"))
    }
}

/// docker's `--format` of a list command over its rows (`objects`, each a
/// JSON object of `fields`): `json` prints each as a JSON line; `table
/// TEMPLATE` a header row (each field's label) then a row per object,
/// aligned as docker's tabwriter aligns them; any other template is run
/// once per object. `\t` and `\n` in it are a tab and a newline, as in
/// docker. `None`: plain `table`, the command's own table.
fn render_list(
    format: &str,
    fields: &[(&str, &str)],
    objects: &[serde_json::Value],
) -> Result<Option<String>> {
    if format == "json" {
        let lines = objects.iter().map(|o| crate::output::go_json(o) + "\n");
        return Ok(Some(lines.collect()));
    }
    let format = format.replace("\\t", "\t").replace("\\n", "\n");
    let (table, source) = match format.strip_prefix("table") {
        Some(rest) => (true, rest.trim_matches(' ')),
        None => (false, format.trim_matches(' ')),
    };
    if table && source.is_empty() {
        return Ok(None);
    }
    let template = Format::parse(source)?;
    let mut out = String::new();
    if table {
        let labels = fields
            .iter()
            .map(|(field, label)| (field.to_string(), label.to_string()));
        let header = serde_json::Value::Object(
            labels
                .map(|(f, l)| (f, serde_json::Value::String(l)))
                .collect(),
        );
        out.push_str(&template.render(&header)?);
        out.push('\n');
    }
    for object in objects {
        out.push_str(&template.render(object)?);
        out.push('\n');
    }
    Ok(Some(match table {
        true => crate::output::align_columns(&out),
        false => out,
    }))
}

/// Prints a list command's rows: as `format` asks, unless `-q` (which
/// docker lets win), else (or for plain `table`) as the command's `table`.
pub fn print_list(
    format: Option<&str>,
    quiet: bool,
    fields: &[(&str, &str)],
    objects: impl FnOnce() -> Vec<serde_json::Value>,
    table: impl FnOnce() -> String,
) -> Result<()> {
    let formatted = match format.filter(|_| !quiet) {
        Some(format) => render_list(format, fields, &objects())?,
        None => None,
    };
    out!("{}", formatted.unwrap_or_else(table))?;
    Ok(())
}

fn text(s: impl AsRef<str>) -> Value {
    Value::String(s.as_ref().into())
}

/// The `N` arguments a function takes, or Go's arity error.
fn exactly<'a, const N: usize>(
    name: &str,
    args: &'a [Value],
) -> Result<&'a [Value; N], TemplateError> {
    args.try_into().map_err(|_| TemplateError::ArgCount {
        name: name.to_string(),
        expected: N,
        got: args.len(),
    })
}

/// Go's `strings.Title`: each word's first letter upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric();
    }
    out
}

fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::Uint(u),
            _ => Value::Float(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => text(s),
        J::Array(items) => Value::List(items.iter().map(to_value).collect()),
        J::Object(map) => Value::Map(Arc::new(
            map.iter()
                .map(|(k, v)| (Arc::from(k.as_str()), to_value(v)))
                .collect::<BTreeMap<_, _>>(),
        )),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Uint(u) => J::from(*u),
        Value::Float(f) => J::from(*f),
        Value::String(s) => J::String(s.to_string()),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => J::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str) -> String {
        let data = json!({
            "Id": "abc",
            "State": {"Running": true, "Pid": 42},
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v"}, "Cmd": null},
            "Name": "/web",
        });
        Format::parse(source).unwrap().render(&data).unwrap()
    }

    #[test]
    fn docker_inspect_formats_render_as_go_renders_them() {
        assert_eq!(render("{{.State.Running}} {{.State.Pid}}"), "true 42");
        assert_eq!(render("{{.Config.Env}}"), "[A=1 B=2]");
        assert_eq!(render("{{json .Config.Labels}}"), r#"{"k":"v"}"#);
        assert_eq!(render(r#"{{index .Config.Labels "k"}}"#), "v");
        assert_eq!(render("{{range .Config.Env}}{{.}};{{end}}"), "A=1;B=2;");
        assert_eq!(render(r#"{{join .Config.Env ","}}"#), "A=1,B=2");
        assert_eq!(render(r#"{{upper .Id}} {{title "a b"}}"#), "ABC A B");
        assert_eq!(render("{{if .State.Running}}up{{else}}down{{end}}"), "up");
        assert_eq!(render("{{json .Config.Cmd}}"), "null");
    }

    #[test]
    fn list_formats_are_json_lines_a_table_with_labels_or_a_line_per_row() {
        let fields = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        let rows = [
            json!({"ID": "abc", "Names": "web"}),
            json!({"ID": "d", "Names": "db"}),
        ];
        let list = |f: &str| render_list(f, &fields, &rows).unwrap();
        assert_eq!(list("{{.Names}}").unwrap(), "web\ndb\n");
        assert_eq!(
            list("table {{.ID}}\\t{{.Names}}").unwrap(),
            "CONTAINER ID   NAMES\nabc            web\nd              db\n"
        );
        assert_eq!(
            list("json").unwrap(),
            "{\"ID\":\"abc\",\"Names\":\"web\"}\n{\"ID\":\"d\",\"Names\":\"db\"}\n"
        );
        assert_eq!(list("table"), None);
    }

    #[test]
    fn a_field_the_object_lacks_is_an_error_naming_it_a_null_one_is_no_value() {
        let data = json!({"Config": {"Cmd": null, "Labels": {"k": "v"}}});
        for source in ["{{.Bogus}}", "{{.Config.Bogus}}", "{{if .Bogus}}x{{end}}"] {
            let e = Format::parse(source).unwrap().render(&data);
            let e = e.expect_err(source).to_string();
            assert!(e.contains("Bogus"), "{source}: {e}");
        }
        let render = |source: &str| Format::parse(source).unwrap().render(&data).unwrap();
        assert_eq!(render("{{.Config.Cmd}}"), "<no value>");
        // Go's index of a key a map lacks is its zero value, no error.
        assert_eq!(render(r#"{{index .Config.Labels "x"}}"#), "<no value>");
    }

    #[test]
    fn a_malformed_template_is_a_parse_error() {
        let e = Format::parse("{{.Id").err().expect("unclosed action");
        assert!(e.to_string().starts_with("template parsing error"), "{e}");
        let unknown = Format::parse("{{nosuchfunc .Id}}").and_then(|f| f.render(&json!({})));
        let e = unknown.expect_err("an unknown function");
        assert!(e.to_string().contains("nosuchfunc"), "{e}");
    }
}

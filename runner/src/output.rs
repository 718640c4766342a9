//! The tables `history`, `images` and `ps` print, laid out as docker/cli lays
//! them out.
//!
//! docker renders each row as tab-separated cells ending in a newline and
//! feeds the text to its copy of Go's `text/tabwriter` (minwidth 10,
//! tabwidth 1, padding 3, spaces). A cell followed by a tab is padded to its
//! column's width; the last cell of a line is not, so an empty COMMENT leaves
//! SIZE's padding as trailing spaces. [`align_columns`] reproduces that
//! byte for byte.
//!
//! Everything here is pure: rows come in as plain data and `now` (Unix
//! nanoseconds) is passed in.

use crate::humanize::{
    created_since, format_rfc3339, history_created_since, human_duration, human_size, parse_rfc3339,
};
use crate::truncate::{display_width, ellipsis, truncate_id};
use layerdb::escape::escape;
use layerdb::image::History;
use std::fmt;

/// docker/cli's table writer settings.
const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// What `history` shows in the IMAGE column for entries without a local image.
pub const MISSING: &str = "<missing>";

struct Cell<'a> {
    text: &'a str,
    width: usize,
}

/// Lays out tab-terminated cells the way docker's tabwriter
/// (`NewWriter(out, 10, 1, 3, ' ', 0)`) does.
///
/// Tab-terminated cells in adjacent lines form a column; each such cell is
/// padded with spaces to the widest cell of its column block plus 3, and to
/// at least 10. The last cell of each line is never padded. Cell widths are
/// display widths (wide characters count 2).
pub fn align_columns(text: &str) -> String {
    let mut lines: Vec<Vec<Cell<'_>>> = text
        .split('\n')
        .map(|line| {
            line.split('\t')
                .map(|cell| Cell {
                    text: cell,
                    width: display_width(cell),
                })
                .collect()
        })
        .collect();
    // Text after the final newline is an unterminated line: Go keeps its
    // tab-terminated cells and adds the trailing cell only if it is non-empty.
    if let Some(last) = lines.last_mut() {
        if last.last().is_some_and(|cell| cell.text.is_empty()) {
            last.pop();
        }
    }
    let mut layout = Layout {
        lines: &lines,
        widths: Vec::new(),
        out: String::with_capacity(text.len() * 2),
    };
    layout.format(0, lines.len());
    layout.out
}

/// Go's `tabwriter.Writer.format`: column blocks found recursively, left to
/// right.
struct Layout<'t, 'a> {
    lines: &'t [Vec<Cell<'a>>],
    widths: Vec<usize>,
    out: String,
}

impl Layout<'_, '_> {
    /// Whether `line` has a tab-terminated cell in `column`.
    fn has_column(&self, line: usize, column: usize) -> bool {
        column + 1 < self.lines[line].len()
    }

    fn format(&mut self, first: usize, end: usize) {
        let column = self.widths.len();
        let mut line0 = first;
        let mut this = first;
        while this < end {
            if !self.has_column(this, column) {
                this += 1;
                continue;
            }
            self.write_lines(line0, this);
            line0 = this;
            let mut width = MIN_WIDTH;
            while this < end && self.has_column(this, column) {
                width = width.max(self.lines[this][column].width + PADDING);
                this += 1;
            }
            self.widths.push(width);
            self.format(line0, this);
            self.widths.pop();
            line0 = this;
        }
        self.write_lines(line0, end);
    }

    fn write_lines(&mut self, first: usize, end: usize) {
        for index in first..end {
            for (column, cell) in self.lines[index].iter().enumerate() {
                self.out.push_str(cell.text);
                if let Some(&width) = self.widths.get(column) {
                    let padding = width.saturating_sub(cell.width);
                    self.out.extend(std::iter::repeat_n(' ', padding));
                }
            }
            if index + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

/// Builds a table's text: header and rows joined by tabs, each line ending
/// in a newline, then aligned.
fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut text = header.join("\t");
    text.push('\n');
    for row in rows {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    align_columns(&text)
}

/// `--format`: docker's default table or `json` (one object per line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

/// JSON as Go's `encoding/json` writes it with HTML escaping off (docker's
/// `{{json .}}`): like serde_json, plus `\u2028` and `\u2029`.
pub fn go_json(value: &serde_json::Value) -> String {
    let encoded = serde_json::to_string(value).expect("a JSON value always serializes");
    encoded
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn go_json_string(value: &str) -> String {
    go_json(&serde_json::Value::from(value))
}

/// One `{"Key":"value",...}` line, keys in the order given (docker marshals a
/// map, so callers pass them sorted).
fn json_line(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{}", go_json_string(key), go_json_string(value)))
        .collect();
    format!("{{{}}}\n", body.join(","))
}

// ---------------------------------------------------------------- history

/// One line of `history`, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryRow {
    /// The local image this entry belongs to (`sha256:<hex>`), or `None` for
    /// `<missing>`.
    pub id: Option<String>,
    /// Unix nanoseconds; `None` when unknown or unrepresentable.
    pub created: Option<i64>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryOptions {
    /// `-H` (default true): human sizes and ages.
    pub human: bool,
    pub no_trunc: bool,
    pub quiet: bool,
    pub format: ListFormat,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            human: true,
            no_trunc: false,
            quiet: false,
            format: ListFormat::Table,
        }
    }
}

/// Why an image's history cannot be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// More non-empty history entries than layers (docker's wording).
    TooManyNonEmptyLayers { entries: usize, layers: usize },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::TooManyNonEmptyLayers { .. } => {
                f.write_str("too many non-empty layers in History section")
            }
        }
    }
}

impl std::error::Error for HistoryError {}

/// The rows of `history` for one image, newest first, as moby's classic
/// store builds them.
///
/// - `history`: the config's entries, oldest to newest.
/// - `chain`: the image's id, then its local parent's, grandparent's... for as
///   long as each parent is present in the store.
/// - `layer_sizes`: the image's layers bottom to top; the i-th non-empty
///   entry takes the i-th size, empty entries 0.
///
/// IMAGE ids are assigned by position: row 0 takes `chain[0]`, row 1
/// `chain[1]`..., every other row is `<missing>`. A missing `created` counts
/// as the Unix epoch (Go's zero Unix time), an unparseable one as unknown.
pub fn history_rows(
    history: &[History],
    chain: &[String],
    layer_sizes: &[u64],
) -> Result<Vec<HistoryRow>, HistoryError> {
    let entries = history.iter().filter(|entry| !entry.empty_layer).count();
    if entries > layer_sizes.len() {
        return Err(HistoryError::TooManyNonEmptyLayers {
            entries,
            layers: layer_sizes.len(),
        });
    }
    let mut sizes = layer_sizes.iter();
    let mut rows: Vec<HistoryRow> = history
        .iter()
        .map(|entry| {
            let size = if entry.empty_layer {
                0
            } else {
                *sizes.next().expect("counted above: enough layers")
            };
            let created = if entry.created.is_empty() {
                Some(0)
            } else {
                parse_rfc3339(&entry.created).ok()
            };
            HistoryRow {
                id: None,
                created,
                created_by: entry.created_by.clone(),
                size,
                comment: entry.comment.clone(),
            }
        })
        .collect();
    rows.reverse();
    for (row, id) in rows.iter_mut().zip(chain) {
        row.id = Some(id.clone());
    }
    Ok(rows)
}

/// The formatted cells of one history row (docker's `historyContext`).
struct HistoryCells {
    id: String,
    created_at: String,
    created_since: String,
    created_by: String,
    size: String,
    comment: String,
}

fn history_cells(row: &HistoryRow, options: &HistoryOptions, now: i64) -> HistoryCells {
    let id = match &row.id {
        None => MISSING.to_string(),
        Some(id) if options.no_trunc => id.clone(),
        Some(id) => truncate_id(id).to_string(),
    };
    let created_at = row
        .created
        .map_or_else(|| "N/A".to_string(), format_rfc3339);
    let created_since = if options.human {
        history_created_since(row.created, now)
    } else {
        created_at.clone()
    };
    let created_by = row.created_by.replace('\t', " ");
    let created_by = if options.no_trunc {
        created_by
    } else {
        ellipsis(&created_by, 45)
    };
    let size = if options.human {
        human_size(row.size)
    } else {
        row.size.to_string()
    };
    HistoryCells {
        id,
        created_at,
        created_since,
        created_by,
        size,
        comment: row.comment.clone(),
    }
}

/// The whole output of `history`, trailing newline included.
///
/// `--format json` wins over `-q`, as in docker: a custom format is used as
/// given.
pub fn render_history(rows: &[HistoryRow], options: &HistoryOptions, now: i64) -> String {
    let cells = rows.iter().map(|row| history_cells(row, options, now));
    match options.format {
        ListFormat::Json => cells
            .map(|c| {
                json_line(&[
                    ("Comment", c.comment),
                    ("CreatedAt", c.created_at),
                    ("CreatedBy", c.created_by),
                    ("CreatedSince", c.created_since),
                    ("ID", c.id),
                    ("Size", c.size),
                ])
            })
            .collect(),
        ListFormat::Table if options.quiet => cells.map(|c| c.id + "\n").collect(),
        ListFormat::Table => {
            let created = if options.human {
                "CREATED"
            } else {
                "CREATED AT"
            };
            table(
                &["IMAGE", created, "CREATED BY", "SIZE", "COMMENT"],
                cells.map(|c| {
                    let when = if options.human {
                        c.created_since
                    } else {
                        c.created_at
                    };
                    // An image's own words, shown and never obeyed (JSON
                    // escapes them as JSON does).
                    let (by, comment) = (escape(&c.created_by), escape(&c.comment));
                    vec![c.id, when, by, c.size, comment]
                }),
            )
        }
    }
}

// ----------------------------------------------------------------- images

/// One line of `images`: one per repository:tag, or `<none>`/`<none>` for a
/// dangling image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRow {
    pub repository: String,
    pub tag: String,
    /// `sha256:<hex>`.
    pub id: String,
    /// Unix nanoseconds; `None` shows `N/A`.
    pub created: Option<i64>,
    /// All layers of the image.
    pub size: u64,
    /// The repository's manifest digest (`sha256:<hex>`) or `<none>`,
    /// shown with `--digests`.
    pub digest: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImagesOptions {
    pub quiet: bool,
    pub no_trunc: bool,
    /// A DIGEST column after TAG.
    pub digests: bool,
}

/// The fields an `images --format` template names, each with its header.
pub const IMAGE_FIELDS: &[(&str, &str)] = &[
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
];

/// Each row as `images --format` templates see it.
pub fn image_objects(
    rows: &[ImageRow],
    options: &ImagesOptions,
    now: i64,
) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|row| {
            serde_json::json!({
                "CreatedAt": row.created.map_or_else(|| "N/A".to_string(), go_time),
                "CreatedSince": created_since(row.created, now),
                "Digest": row.digest,
                "ID": if options.no_trunc { row.id.clone() } else { truncate_id(&row.id).to_string() },
                "Repository": row.repository,
                "Size": human_size(row.size),
                "Tag": row.tag,
            })
        })
        .collect()
}

/// The whole output of `images`. `-q` prints one id per row (docker repeats
/// an image's id for each of its tags).
pub fn render_images(rows: &[ImageRow], options: &ImagesOptions, now: i64) -> String {
    let id = |row: &ImageRow| {
        if options.no_trunc {
            row.id.clone()
        } else {
            truncate_id(&row.id).to_string()
        }
    };
    if options.quiet {
        return rows.iter().map(|row| id(row) + "\n").collect();
    }
    let mut header = vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];
    if options.digests {
        header.insert(2, "DIGEST");
    }
    table(
        &header,
        rows.iter().map(|row| {
            let mut cells = vec![
                row.repository.clone(),
                row.tag.clone(),
                id(row),
                created_since(row.created, now),
                human_size(row.size),
            ];
            if options.digests {
                cells.insert(2, row.digest.clone());
            }
            cells
        }),
    )
}

// --------------------------------------------------------------------- ps

/// A container's state, for the STATUS column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Never started.
    Created,
    /// `started_at` in Unix nanoseconds; `health` what its health check
    /// found (`healthy`, `unhealthy`, `health: starting`), if it has one.
    Running {
        started_at: i64,
        health: Option<&'static str>,
    },
    Paused {
        started_at: i64,
    },
    Exited {
        exit_code: i32,
        finished_at: i64,
    },
    /// Exited, and waiting for its restart policy's next start.
    Restarting {
        exit_code: i32,
        finished_at: i64,
    },
}

impl ContainerStatus {
    /// docker's name for the state (`State.Status`, `ps --filter status=`).
    pub fn name(&self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running { .. } => "running",
            ContainerStatus::Paused { .. } => "paused",
            ContainerStatus::Exited { .. } => "exited",
            ContainerStatus::Restarting { .. } => "restarting",
        }
    }
}

/// moby's `State.String()`: `Up 3 minutes`, `Up 2 hours (Paused)`,
/// `Exited (0) 5 seconds ago`, `Created`.
pub fn status_text(status: &ContainerStatus, now: i64) -> String {
    match *status {
        ContainerStatus::Created => "Created".to_string(),
        ContainerStatus::Running { started_at, health } => {
            let up = format!("Up {}", human_duration(now.saturating_sub(started_at)));
            match health {
                Some(health) => format!("{up} ({health})"),
                None => up,
            }
        }
        ContainerStatus::Paused { started_at } => format!(
            "Up {} (Paused)",
            human_duration(now.saturating_sub(started_at))
        ),
        ContainerStatus::Exited {
            exit_code,
            finished_at,
        } => format!(
            "Exited ({exit_code}) {} ago",
            human_duration(now.saturating_sub(finished_at))
        ),
        ContainerStatus::Restarting {
            exit_code,
            finished_at,
        } => format!(
            "Restarting ({exit_code}) {} ago",
            human_duration(now.saturating_sub(finished_at))
        ),
    }
}

/// moby's `Command` of a container summary: the program, then its
/// arguments, each argument containing a space wrapped in single quotes.
pub fn container_command(argv: &[String]) -> String {
    let Some((path, args)) = argv.split_first() else {
        return String::new();
    };
    let mut command = path.clone();
    for arg in args {
        command.push(' ');
        if arg.contains(' ') {
            command.push('\'');
            command.push_str(arg);
            command.push('\'');
        } else {
            command.push_str(arg);
        }
    }
    command
}

/// Whether Go's `unicode.IsPrint` would refuse the character (controls,
/// separators other than the ASCII space, format characters).
fn go_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00A0}' | '\u{00AD}' | '\u{061C}' | '\u{1680}' | '\u{180E}'
            | '\u{2000}'..='\u{200F}' | '\u{2028}'..='\u{202F}'
            | '\u{205F}'..='\u{206F}' | '\u{3000}' | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// Go's `strconv.Quote`: double quotes, backslash escapes, `\xNN`/`\uNNNN`
/// for unprintable characters.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if go_unprintable(c) => {
                if u32::from(c) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)));
                } else {
                    out.push_str(&format!("\\U{:08x}", u32::from(c)));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One line of `ps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsRow {
    /// 64 hex characters.
    pub id: String,
    /// The image as the user named it at `run` (`ubuntu`, `node-base:1`, or
    /// an id).
    pub image: String,
    /// The image's id, `sha256:<hex>`.
    pub image_id: String,
    /// See [`container_command`].
    pub command: String,
    /// Unix nanoseconds.
    pub created: i64,
    pub status: ContainerStatus,
    pub ports: String,
    /// Without docker's leading `/`.
    pub names: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PsOptions {
    pub quiet: bool,
    pub no_trunc: bool,
}

/// The IMAGE cell: `<no image>` when empty; truncated, an image given by id
/// shows as the short id and a name loses the `docker.io/library/` prefix.
fn ps_image(row: &PsRow, trunc: bool) -> String {
    if row.image.is_empty() {
        return "<no image>".to_string();
    }
    if !trunc {
        return row.image.clone();
    }
    let short_id = truncate_id(&row.image_id);
    if short_id == truncate_id(&row.image) {
        return short_id.to_string();
    }
    let familiar = row
        .image
        .strip_prefix("docker.io/library/")
        .or_else(|| row.image.strip_prefix("docker.io/"))
        .unwrap_or(&row.image);
    familiar.to_string()
}

/// The NAMES cell: truncated, the first name that is not a legacy link;
/// otherwise all names joined by commas.
fn ps_names(names: &[String], trunc: bool) -> String {
    let names: Vec<&str> = names
        .iter()
        .map(|name| name.strip_prefix('/').unwrap_or(name))
        .collect();
    if trunc {
        return names
            .iter()
            .find(|name| !name.contains('/'))
            .map_or_else(String::new, |name| name.to_string());
    }
    names.join(",")
}

/// The PORTS cell: each published port as docker shows it,
/// `0.0.0.0:8080->80/tcp`, joined by `, `.
pub fn ports_text(ports: &[layerdb::PortBinding]) -> String {
    ports
        .iter()
        .map(|port| {
            format!(
                "{}:{}->{}/{}",
                port.host_ip, port.host_port, port.container_port, port.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fields a `ps --format` template names, each with its header.
pub const PS_FIELDS: &[(&str, &str)] = &[
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Names", "NAMES"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("State", "STATE"),
    ("Status", "STATUS"),
];

/// Each row as `ps --format` templates see it: the cells of the table,
/// truncated as it truncates them.
pub fn ps_objects(rows: &[PsRow], options: &PsOptions, now: i64) -> Vec<serde_json::Value> {
    let trunc = !options.no_trunc;
    rows.iter()
        .map(|row| {
            let command = match trunc {
                true => ellipsis(&row.command, 20),
                false => row.command.clone(),
            };
            serde_json::json!({
                "Command": go_quote(&command),
                "CreatedAt": go_time(row.created),
                "ID": if trunc { truncate_id(&row.id).to_string() } else { row.id.clone() },
                "Image": ps_image(row, trunc),
                "Names": ps_names(&row.names, trunc),
                "Ports": row.ports,
                "RunningFor": created_since(Some(row.created), now),
                "State": row.status.name(),
                "Status": status_text(&row.status, now),
            })
        })
        .collect()
}

/// A time as Go's `time.Time` prints it (`2024-06-01 12:00:00 +0000 UTC`),
/// docker's `.CreatedAt`.
fn go_time(nanos: i64) -> String {
    let rfc3339 = format_rfc3339(nanos);
    format!(
        "{} +0000 UTC",
        rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// The whole output of `ps`.
pub fn render_ps(rows: &[PsRow], options: &PsOptions, now: i64) -> String {
    let trunc = !options.no_trunc;
    let id = |row: &PsRow| {
        if trunc {
            truncate_id(&row.id).to_string()
        } else {
            row.id.clone()
        }
    };
    if options.quiet {
        return rows.iter().map(|row| id(row) + "\n").collect();
    }
    table(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        rows.iter().map(|row| {
            let command = if trunc {
                ellipsis(&row.command, 20)
            } else {
                row.command.clone()
            };
            vec![
                id(row),
                ps_image(row, trunc),
                go_quote(&command),
                created_since(Some(row.created), now),
                status_text(&row.status, now),
                row.ports.clone(),
                ps_names(&row.names, trunc),
            ]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::humanize::{format_rfc3339_nano, NANOS_PER_SECOND};

    const SECOND: i64 = NANOS_PER_SECOND;
    const MINUTE: i64 = 60 * SECOND;
    const WEEK: i64 = 7 * 24 * 60 * MINUTE;
    /// 2024-06-01T12:00:00Z.
    const NOW: i64 = 1_717_243_200 * SECOND;

    fn sha(short: &str) -> String {
        format!("sha256:{short}{}", "0".repeat(64 - short.len()))
    }

    /// The ubuntu rows of both walkthrough tables, newest first.
    fn ubuntu_rows(cmd_id: Option<String>) -> Vec<HistoryRow> {
        let old = Some(NOW - 5 * WEEK - 3 * 24 * 60 * MINUTE);
        let nop = |created_by: &str, size: u64| HistoryRow {
            id: None,
            created: old,
            created_by: created_by.to_string(),
            size,
            comment: String::new(),
        };
        let mut rows = vec![
            nop("/bin/sh -c #(nop)  CMD [\"/bin/bash\"]", 0),
            nop(
                "/bin/sh -c #(nop) ADD file:07cdbabf782942af0b2a7e0f1c0fda5f2da5ae8b8a54c2c4e8c6a7d3b4b1c2d3 in / ",
                69_214_422,
            ),
            nop(
                "/bin/sh -c #(nop)  LABEL org.opencontainers.image.version=22.04",
                0,
            ),
            nop(
                "/bin/sh -c #(nop)  LABEL org.opencontainers.image.ref.name=ubuntu",
                0,
            ),
            nop("/bin/sh -c #(nop)  ARG LAUNCHPAD_BUILD_ARCH", 0),
            nop("/bin/sh -c #(nop)  ARG RELEASE", 0),
        ];
        rows[0].id = cmd_id;
        rows
    }

    fn commit_row(id: &str, ago: i64, size: u64, comment: &str) -> HistoryRow {
        HistoryRow {
            id: Some(sha(id)),
            created: Some(NOW - ago),
            created_by: "/bin/bash".to_string(),
            size,
            comment: comment.to_string(),
        }
    }

    #[test]
    fn history_of_node_base_matches_the_walkthrough_byte_for_byte() {
        let mut rows = vec![commit_row(
            "d5c1fca2cdc4",
            10 * SECOND,
            125_987_654,
            "Add node",
        )];
        rows.extend(ubuntu_rows(Some(sha("2b7cc08dcdbb"))));
        let expected = concat!(
            "IMAGE          CREATED          CREATED BY                                      SIZE      COMMENT\n",
            "d5c1fca2cdc4   10 seconds ago   /bin/bash                                       126MB     Add node\n",
            "2b7cc08dcdbb   5 weeks ago      /bin/sh -c #(nop)  CMD [\"/bin/bash\"]            0B        \n",
            "<missing>      5 weeks ago      /bin/sh -c #(nop) ADD file:07cdbabf782942af0…   69.2MB    \n",
            "<missing>      5 weeks ago      /bin/sh -c #(nop)  LABEL org.opencontainers.…   0B        \n",
            "<missing>      5 weeks ago      /bin/sh -c #(nop)  LABEL org.opencontainers.…   0B        \n",
            "<missing>      5 weeks ago      /bin/sh -c #(nop)  ARG LAUNCHPAD_BUILD_ARCH     0B        \n",
            "<missing>      5 weeks ago      /bin/sh -c #(nop)  ARG RELEASE                  0B        \n",
        );
        assert_eq!(
            render_history(&rows, &HistoryOptions::default(), NOW),
            expected
        );
    }

    #[test]
    fn history_of_sample_app_matches_the_walkthrough_byte_for_byte() {
        let mut rows = vec![
            commit_row("c1502e2ec875", 65 * SECOND, 33, "Add app"),
            commit_row(
                "5310da79c50a",
                4 * MINUTE + 5 * SECOND,
                126_000_000,
                "Add node",
            ),
        ];
        rows.extend(ubuntu_rows(Some(sha("2b7cc08dcdbb"))));
        let expected = concat!(
            "IMAGE          CREATED              CREATED BY                                      SIZE      COMMENT\n",
            "c1502e2ec875   About a minute ago   /bin/bash                                       33B       Add app\n",
            "5310da79c50a   4 minutes ago        /bin/bash                                       126MB     Add node\n",
            "2b7cc08dcdbb   5 weeks ago          /bin/sh -c #(nop)  CMD [\"/bin/bash\"]            0B        \n",
            "<missing>      5 weeks ago          /bin/sh -c #(nop) ADD file:07cdbabf782942af0…   69.2MB    \n",
            "<missing>      5 weeks ago          /bin/sh -c #(nop)  LABEL org.opencontainers.…   0B        \n",
            "<missing>      5 weeks ago          /bin/sh -c #(nop)  LABEL org.opencontainers.…   0B        \n",
            "<missing>      5 weeks ago          /bin/sh -c #(nop)  ARG LAUNCHPAD_BUILD_ARCH     0B        \n",
            "<missing>      5 weeks ago          /bin/sh -c #(nop)  ARG RELEASE                  0B        \n",
        );
        assert_eq!(
            render_history(&rows, &HistoryOptions::default(), NOW),
            expected
        );
    }

    #[test]
    fn history_table_equals_the_walkthrough_text_once_trailing_spaces_are_trimmed() {
        let mut rows = vec![commit_row(
            "d5c1fca2cdc4",
            10 * SECOND,
            126_000_000,
            "Add node",
        )];
        rows.extend(ubuntu_rows(Some(sha("2b7cc08dcdbb"))));
        let walkthrough = "\
IMAGE          CREATED          CREATED BY                                      SIZE      COMMENT
d5c1fca2cdc4   10 seconds ago   /bin/bash                                       126MB     Add node
2b7cc08dcdbb   5 weeks ago      /bin/sh -c #(nop)  CMD [\"/bin/bash\"]            0B
<missing>      5 weeks ago      /bin/sh -c #(nop) ADD file:07cdbabf782942af0…   69.2MB
<missing>      5 weeks ago      /bin/sh -c #(nop)  LABEL org.opencontainers.…   0B
<missing>      5 weeks ago      /bin/sh -c #(nop)  LABEL org.opencontainers.…   0B
<missing>      5 weeks ago      /bin/sh -c #(nop)  ARG LAUNCHPAD_BUILD_ARCH     0B
<missing>      5 weeks ago      /bin/sh -c #(nop)  ARG RELEASE                  0B
";
        let rendered = render_history(&rows, &HistoryOptions::default(), NOW);
        let trimmed: String = rendered
            .lines()
            .map(|line| format!("{}\n", line.trim_end()))
            .collect();
        assert_eq!(trimmed, walkthrough);
    }

    #[test]
    fn history_without_rows_prints_the_header_only() {
        assert_eq!(
            render_history(&[], &HistoryOptions::default(), NOW),
            "IMAGE     CREATED   CREATED BY   SIZE      COMMENT\n"
        );
    }

    #[test]
    fn history_quiet_prints_the_image_column_including_missing() {
        let rows = ubuntu_rows(Some(sha("2b7cc08dcdbb")));
        let options = HistoryOptions {
            quiet: true,
            ..HistoryOptions::default()
        };
        let out = render_history(&rows[..3], &options, NOW);
        assert_eq!(out, "2b7cc08dcdbb\n<missing>\n<missing>\n");
    }

    #[test]
    fn history_no_trunc_shows_full_ids_and_commands() {
        let rows = ubuntu_rows(Some(sha("2b7cc08dcdbb")));
        let options = HistoryOptions {
            no_trunc: true,
            quiet: true,
            ..HistoryOptions::default()
        };
        assert_eq!(
            render_history(&rows[..1], &options, NOW),
            format!("{}\n", sha("2b7cc08dcdbb"))
        );
        let options = HistoryOptions {
            no_trunc: true,
            ..HistoryOptions::default()
        };
        let out = render_history(&rows[1..2], &options, NOW);
        assert!(out.contains("a7d3b4b1c2d3 in / "), "{out}");
        assert!(!out.contains('…'));
    }

    #[test]
    fn history_turns_tabs_in_created_by_into_spaces() {
        let rows = vec![HistoryRow {
            created_by: "/bin/sh -c\tapt-get\tupdate".to_string(),
            created: Some(NOW),
            ..HistoryRow::default()
        }];
        let out = render_history(&rows, &HistoryOptions::default(), NOW);
        assert!(out.contains("/bin/sh -c apt-get update"), "{out}");
    }

    #[test]
    fn history_shows_an_images_terminal_escapes_without_obeying_them() {
        let rows = vec![HistoryRow {
            created_by: "/bin/sh -c true \u{1b}[2J".to_string(),
            comment: "\u{1b}]0;owned\u{7}".to_string(),
            created: Some(NOW),
            ..HistoryRow::default()
        }];
        let out = render_history(&rows, &HistoryOptions::default(), NOW);
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("true \\u{1b}[2J"), "{out}");
        assert!(out.contains("\\u{1b}]0;owned\\u{7}"), "{out}");
    }

    #[test]
    fn history_not_human_prints_bytes_and_rfc3339_under_created_at() {
        let rows = vec![commit_row("c1502e2ec875", 65 * SECOND, 33, "Add app")];
        let options = HistoryOptions {
            human: false,
            ..HistoryOptions::default()
        };
        let expected = concat!(
            "IMAGE          CREATED AT             CREATED BY   SIZE      COMMENT\n",
            "c1502e2ec875   2024-06-01T11:58:55Z   /bin/bash    33        Add app\n",
        );
        assert_eq!(render_history(&rows, &options, NOW), expected);
    }

    #[test]
    fn history_shows_na_for_layers_dated_2000_or_earlier() {
        let rows = vec![HistoryRow {
            created: Some(0),
            created_by: "/bin/sh".to_string(),
            ..HistoryRow::default()
        }];
        let out = render_history(&rows, &HistoryOptions::default(), NOW);
        assert!(out.lines().nth(1).unwrap().contains("   N/A   "), "{out}");
    }

    #[test]
    fn history_json_prints_one_object_per_row_with_sorted_keys() {
        let rows = vec![
            commit_row("c1502e2ec875", 65 * SECOND, 33, "Add app"),
            HistoryRow {
                created: Some(NOW - 5 * WEEK),
                created_by: "/bin/sh -c #(nop)  CMD [\"/bin/bash\"]".to_string(),
                ..HistoryRow::default()
            },
        ];
        let options = HistoryOptions {
            format: ListFormat::Json,
            quiet: true,
            ..HistoryOptions::default()
        };
        let expected = concat!(
            r#"{"Comment":"Add app","CreatedAt":"2024-06-01T11:58:55Z","CreatedBy":"/bin/bash","#,
            r#""CreatedSince":"About a minute ago","ID":"c1502e2ec875","Size":"33B"}"#,
            "\n",
            r#"{"Comment":"","CreatedAt":"2024-04-27T12:00:00Z","CreatedBy":"/bin/sh -c #(nop)  CMD [\"/bin/bash\"]","#,
            r#""CreatedSince":"5 weeks ago","ID":"<missing>","Size":"0B"}"#,
            "\n",
        );
        assert_eq!(render_history(&rows, &options, NOW), expected);
    }

    #[test]
    fn history_json_not_human_puts_the_timestamp_in_created_since_too() {
        let rows = vec![commit_row("c1502e2ec875", 65 * SECOND, 33, "")];
        let options = HistoryOptions {
            format: ListFormat::Json,
            human: false,
            ..HistoryOptions::default()
        };
        let out = render_history(&rows, &options, NOW);
        assert!(
            out.contains(r#""CreatedSince":"2024-06-01T11:58:55Z""#),
            "{out}"
        );
        assert!(out.contains(r#""Size":"33""#), "{out}");
    }

    fn entry(created_by: &str, empty_layer: bool) -> History {
        History {
            created: format_rfc3339_nano(NOW),
            created_by: created_by.to_string(),
            empty_layer,
            ..History::default()
        }
    }

    #[test]
    fn history_rows_are_newest_first_with_ids_by_position() {
        let history = vec![
            entry("ARG RELEASE", true),
            entry("ADD file", false),
            entry("CMD bash", true),
            entry("/bin/bash", false),
        ];
        let chain = vec![sha("aaa"), sha("bbb")];
        let rows = history_rows(&history, &chain, &[69_200_000, 126_000_000]).unwrap();
        let summary: Vec<(Option<String>, &str, u64)> = rows
            .iter()
            .map(|r| (r.id.clone(), r.created_by.as_str(), r.size))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some(sha("aaa")), "/bin/bash", 126_000_000),
                (Some(sha("bbb")), "CMD bash", 0),
                (None, "ADD file", 69_200_000),
                (None, "ARG RELEASE", 0),
            ]
        );
        assert!(rows.iter().all(|r| r.created == Some(NOW)));
    }

    #[test]
    fn history_rows_give_a_long_chain_no_more_rows_than_entries() {
        let history = vec![entry("/bin/bash", false)];
        let chain = vec![sha("aaa"), sha("bbb"), sha("ccc")];
        let rows = history_rows(&history, &chain, &[5]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, Some(sha("aaa")));
    }

    #[test]
    fn history_rows_without_a_chain_are_all_missing() {
        let history = vec![entry("ADD", false), entry("CMD", true)];
        let rows = history_rows(&history, &[], &[1]).unwrap();
        assert!(rows.iter().all(|r| r.id.is_none()));
    }

    #[test]
    fn history_rows_count_a_missing_created_as_the_unix_epoch() {
        let history = vec![History {
            created_by: "imported".to_string(),
            ..History::default()
        }];
        let rows = history_rows(&history, &[], &[7]).unwrap();
        assert_eq!(rows[0].created, Some(0));
        assert_eq!(rows[0].size, 7);
    }

    #[test]
    fn history_rows_refuse_more_non_empty_entries_than_layers() {
        let history = vec![entry("a", false), entry("b", false)];
        let err = history_rows(&history, &[], &[1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "too many non-empty layers in History section"
        );
    }

    #[test]
    fn align_columns_pads_tab_terminated_cells_to_width_plus_three_or_ten() {
        let text = "a\tbbbbbbbbbbbbbb\tc\nddd\te\tf\n";
        assert_eq!(
            align_columns(text),
            "a         bbbbbbbbbbbbbb   c\nddd       e                f\n"
        );
    }

    #[test]
    fn align_columns_starts_a_new_block_after_a_line_without_the_column() {
        // Go's example: the b and c cells are in different column blocks.
        let text = "aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n";
        assert_eq!(
            align_columns(text),
            concat!(
                "aaaa      bbb       d\n",
                "aa        b         dd\n",
                "a         \n",
                "aa        cccc      eee\n",
            )
        );
    }

    #[test]
    fn align_columns_does_not_pad_the_last_cell_of_a_line() {
        assert_eq!(align_columns("x\t\n"), "x         \n");
        assert_eq!(align_columns("x\n"), "x\n");
    }

    #[test]
    fn align_columns_treats_unterminated_trailing_text_like_go() {
        assert_eq!(align_columns("a\tb"), "a         b");
        assert_eq!(align_columns("a\tb\nc\t"), "a         b\nc");
    }

    #[test]
    fn align_columns_measures_wide_characters_as_two_columns() {
        assert_eq!(
            align_columns("日本語日本語\tx\na\ty\n"),
            "日本語日本語   x\na              y\n"
        );
    }

    #[test]
    fn images_table_shows_repository_tag_short_id_age_and_size() {
        let rows = vec![
            ImageRow {
                repository: "sample-app".into(),
                tag: "latest".into(),
                id: sha("c1502e2ec875"),
                created: Some(NOW - 65 * SECOND),
                size: 195_200_033,
                digest: format!("sha256:{}", "d".repeat(64)),
            },
            ImageRow {
                repository: "<none>".into(),
                tag: "<none>".into(),
                id: sha("5310da79c50a"),
                created: None,
                size: 0,
                digest: "<none>".into(),
            },
        ];
        let expected = concat!(
            "REPOSITORY   TAG       IMAGE ID       CREATED              SIZE\n",
            "sample-app   latest    c1502e2ec875   About a minute ago   195MB\n",
            "<none>       <none>    5310da79c50a   N/A                  0B\n",
        );
        assert_eq!(
            render_images(&rows, &ImagesOptions::default(), NOW),
            expected
        );
        let quiet = ImagesOptions {
            quiet: true,
            no_trunc: true,
            digests: false,
        };
        assert_eq!(
            render_images(&rows, &quiet, NOW),
            format!("{}\n{}\n", sha("c1502e2ec875"), sha("5310da79c50a"))
        );
        let digests = ImagesOptions {
            digests: true,
            ..ImagesOptions::default()
        };
        let table = render_images(&rows, &digests, NOW);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("REPOSITORY   TAG       DIGEST  ")
                && lines[0].contains("  IMAGE ID       CREATED"),
            "{table}"
        );
        assert!(
            lines[1].starts_with(&format!(
                "sample-app   latest    sha256:{}   c1502e2ec875",
                "d".repeat(64)
            )),
            "{table}"
        );
        assert!(
            lines[2].starts_with("<none>       <none>    <none>  "),
            "{table}"
        );
    }

    #[test]
    fn status_text_covers_docker_states() {
        assert_eq!(status_text(&ContainerStatus::Created, NOW), "Created");
        assert_eq!(
            status_text(
                &ContainerStatus::Running {
                    started_at: NOW - 3 * MINUTE,
                    health: None,
                },
                NOW
            ),
            "Up 3 minutes"
        );
        assert_eq!(
            status_text(
                &ContainerStatus::Running {
                    started_at: NOW,
                    health: None
                },
                NOW
            ),
            "Up Less than a second"
        );
        assert_eq!(
            status_text(
                &ContainerStatus::Running {
                    started_at: NOW - 5 * SECOND,
                    health: Some("health: starting")
                },
                NOW
            ),
            "Up 5 seconds (health: starting)"
        );
        assert_eq!(
            status_text(
                &ContainerStatus::Paused {
                    started_at: NOW - 2 * 60 * MINUTE
                },
                NOW
            ),
            "Up 2 hours (Paused)"
        );
        assert_eq!(
            status_text(
                &ContainerStatus::Exited {
                    exit_code: 0,
                    finished_at: NOW - 5 * SECOND
                },
                NOW
            ),
            "Exited (0) 5 seconds ago"
        );
        assert_eq!(
            status_text(
                &ContainerStatus::Exited {
                    exit_code: 137,
                    finished_at: NOW - 3 * WEEK
                },
                NOW
            ),
            "Exited (137) 3 weeks ago"
        );
    }

    #[test]
    fn container_command_quotes_arguments_with_spaces() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(container_command(&argv(&["/bin/bash"])), "/bin/bash");
        assert_eq!(
            container_command(&argv(&["/bin/sh", "-c", "node app.js"])),
            "/bin/sh -c 'node app.js'"
        );
        assert_eq!(container_command(&[]), "");
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("/bin/bash"), "\"/bin/bash\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("a\tb\n"), "\"a\\tb\\n\"");
        assert_eq!(go_quote("\u{1b}[0m"), "\"\\x1b[0m\"");
        assert_eq!(go_quote("\u{a0}é…"), "\"\\u00a0é…\"");
    }

    fn ps_row(command: &str, status: ContainerStatus) -> PsRow {
        PsRow {
            id: "d8c5ca119fcd".to_string() + &"1".repeat(52),
            image: "ubuntu".into(),
            image_id: sha("2b7cc08dcdbb"),
            command: command.into(),
            created: NOW - 3 * MINUTE,
            status,
            ports: String::new(),
            names: vec!["base-container".into()],
        }
    }

    #[test]
    fn ps_table_truncates_the_command_to_20_columns_and_quotes_it() {
        let rows = vec![
            ps_row(
                "/bin/bash",
                ContainerStatus::Running {
                    started_at: NOW - 3 * MINUTE,
                    health: None,
                },
            ),
            PsRow {
                image: "sha256:2b7cc08dcdbb".into(),
                names: vec!["/app-container".into()],
                ..ps_row(
                    "/bin/sh -c 'node app.js --port 8080'",
                    ContainerStatus::Exited {
                        exit_code: 0,
                        finished_at: NOW - 5 * SECOND,
                    },
                )
            },
        ];
        let expected = concat!(
            "CONTAINER ID   IMAGE          COMMAND                  CREATED         STATUS                     PORTS     NAMES\n",
            "d8c5ca119fcd   ubuntu         \"/bin/bash\"              3 minutes ago   Up 3 minutes                         base-container\n",
            "d8c5ca119fcd   2b7cc08dcdbb   \"/bin/sh -c 'node ap…\"   3 minutes ago   Exited (0) 5 seconds ago             app-container\n",
        );
        assert_eq!(render_ps(&rows, &PsOptions::default(), NOW), expected);
    }

    #[test]
    fn ps_no_trunc_keeps_full_ids_commands_and_all_names() {
        let row = PsRow {
            names: vec!["/a".into(), "/b/link".into()],
            ..ps_row(
                "/bin/sh -c 'node app.js --port 8080'",
                ContainerStatus::Created,
            )
        };
        let options = PsOptions {
            no_trunc: true,
            ..PsOptions::default()
        };
        let out = render_ps(std::slice::from_ref(&row), &options, NOW);
        assert!(out.contains(&row.id), "{out}");
        assert!(
            out.contains("\"/bin/sh -c 'node app.js --port 8080'\""),
            "{out}"
        );
        assert!(out.trim_end().ends_with("a,b/link"), "{out}");
        let truncated = render_ps(&[row], &PsOptions::default(), NOW);
        assert!(truncated.trim_end().ends_with("   a"), "{truncated}");
    }

    #[test]
    fn ps_ports_show_host_address_and_port_then_the_containers() {
        let port =
            |host_ip: &str, host_port, container_port, protocol: &str| layerdb::PortBinding {
                host_ip: host_ip.into(),
                host_port,
                container_port,
                protocol: protocol.into(),
            };
        assert_eq!(
            ports_text(&[
                port("0.0.0.0", 8080, 80, "tcp"),
                port("127.0.0.1", 5353, 53, "udp")
            ]),
            "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp"
        );
        assert_eq!(ports_text(&[]), "");
    }

    #[test]
    fn ps_quiet_prints_short_ids() {
        let rows = vec![ps_row("/bin/bash", ContainerStatus::Created)];
        let options = PsOptions {
            quiet: true,
            ..PsOptions::default()
        };
        assert_eq!(render_ps(&rows, &options, NOW), "d8c5ca119fcd\n");
    }

    #[test]
    fn ps_image_drops_the_docker_hub_prefix_when_truncating() {
        let row = PsRow {
            image: "docker.io/library/ubuntu:22.04".into(),
            ..ps_row("/bin/bash", ContainerStatus::Created)
        };
        assert_eq!(ps_image(&row, true), "ubuntu:22.04");
        assert_eq!(ps_image(&row, false), "docker.io/library/ubuntu:22.04");
        let no_image = PsRow {
            image: String::new(),
            ..row
        };
        assert_eq!(ps_image(&no_image, true), "<no image>");
    }
}

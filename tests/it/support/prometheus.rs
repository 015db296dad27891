//! The one reader of Prometheus text exposition (`/metrics`): sample lines
//! parsed into name, labels (quoted values, escapes and all) and value, and
//! the three lookups the tests need.

/// One sample line: `name{k="v",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn has(&self, k: &str, v: &str) -> bool {
        self.labels.iter().any(|(lk, lv)| lk == k && lv == v)
    }
}

/// Every sample line of `text` (comments, blank and unparsable lines skipped).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(sample)
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns the labels and what follows the `}`.
fn label_set(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        s = &after[end + 1..];
    }
}

/// The sum of the samples `name` whose label set contains every `k="v"` in
/// `labels`; 0 when there are none.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.has(k, v)))
        .map(|s| s.value)
        .sum()
}

/// The value of the series `name` whose label set is exactly `labels`
/// (in any order); `None` when no such line exists.
pub fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.has(k, v))
        })
        .map(|s| s.value)
}

/// Every value of label `label` on the samples whose name starts with
/// `prefix` (a histogram's `_bucket`/`_sum`/`_count` lines, or a family).
pub fn label_values(text: &str, prefix: &str, label: &str) -> Vec<String> {
    samples(text)
        .into_iter()
        .filter(|s| s.name.starts_with(prefix))
        .filter_map(|s| {
            s.labels
                .into_iter()
                .find(|(k, _)| k == label)
                .map(|(_, v)| v)
        })
        .collect()
}

#[test]
fn samples_read_quoted_label_values_with_commas_escapes_and_braces() {
    let text = "# HELP x y\n# TYPE x counter\n\
                x{a=\"1,2\",b=\"q\\\"}\\\\\"} 3\nx 4.5\nh_bucket{le=\"+Inf\"} 7 1700000000\n";
    let all = samples(text);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        all[0].labels,
        vec![("a".into(), "1,2".into()), ("b".into(), "q\"}\\".into())]
    );
    assert_eq!(all[0].value, 3.0);
    assert_eq!(series(text, "x", &[]), Some(4.5));
    assert_eq!(metric(text, "x", &[]), 7.5);
    assert_eq!(metric(text, "x", &[("a", "1,2")]), 3.0);
    assert_eq!(label_values(text, "h", "le"), vec!["+Inf"]);
}

//! The results table: one row per variant, P/R/F1 as mean ± std over seeds, ΔF1 against
//! the full model, the best of each column marked.

use std::collections::BTreeMap;

use crate::data::tags::EntityType;
use crate::jobs::registry::{RunView, State};
use crate::jobs::variant::Variant;

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    pub(crate) fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, std })
    }
}

/// One variant's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub variant: String,
    /// Finished runs over all runs of the variant.
    pub finished: usize,
    pub runs: usize,
    pub precision: Option<MeanStd>,
    pub recall: Option<MeanStd>,
    pub f1: Option<MeanStd>,
    /// Mean F1 minus the full model's.
    pub delta_f1: Option<f64>,
    /// Against `full`: approximate randomisation over the pooled test predictions of
    /// every seed ([`with_test_predictions`]).
    pub p_value: Option<f64>,
    /// Test F1 per entity type, from the runs' test predictions.
    pub per_type_f1: BTreeMap<EntityType, MeanStd>,
}

/// The test behind [`Row::p_value`], for a table's caption.
pub(crate) const P_VALUE_TEST: &str = "p: approximate randomisation against full, 1000 rounds, over the test tweets of every seed pooled (seed i of a variant paired with seed i of full)";

/// What a finished run's test predictions say beyond its scores.
struct TestPredictions {
    seed: u64,
    /// Entity counts per tweet (for the paired tests).
    counts: Vec<crate::eval::score::Counts>,
    per_type_f1: BTreeMap<EntityType, f64>,
}

/// Each finished run's test predictions (its test-predictions.txt against its data's
/// test split), by seed; runs without them are left out.
fn test_predictions(runs: &[&RunView]) -> Vec<TestPredictions> {
    let mut found: Vec<TestPredictions> = runs
        .iter()
        .filter(|r| r.state == State::Finished)
        .filter_map(|r| {
            let files = &r.run.files;
            let config = crate::run::TrainConfig::load(&files.train_config(), &[]).ok()?;
            let gold_path = crate::data::split_path(&config.data, "test");
            let gold = crate::data::conll::read_conll(&gold_path).ok()?;
            let predicted = crate::data::conll::read_conll(&files.test_predictions()).ok()?;
            let report = crate::eval::score::score_tweets(&gold, &predicted).ok()?;
            let spans = |tweets: &[crate::data::Tweet]| -> Vec<Vec<crate::data::Span>> {
                tweets
                    .iter()
                    .map(|t| crate::data::spans::spans_from_tags(&t.tags))
                    .collect()
            };
            Some(TestPredictions {
                seed: r.spec.seed,
                counts: crate::eval::significance::tweet_counts(&spans(&gold), &spans(&predicted)),
                per_type_f1: report
                    .per_type
                    .iter()
                    .map(|(kind, score)| (*kind, score.prf.f1))
                    .collect(),
            })
        })
        .collect();
    found.sort_by_key(|t| t.seed);
    found
}

/// Fills what the runs' test predictions give: each variant's per-type F1 (mean ± std
/// over its seeds) and its p-value against `full` (its seeds paired in order with
/// full's, their tweets pooled).
pub(crate) fn with_test_predictions(rows: &mut [Row], runs: &[RunView]) {
    // Each variant's files are read once, full's included.
    let of = |variant: &str| -> Vec<TestPredictions> {
        let runs: Vec<&RunView> = runs.iter().filter(|r| r.spec.variant == variant).collect();
        test_predictions(&runs)
    };
    let mut by_variant: BTreeMap<String, Vec<TestPredictions>> = rows
        .iter()
        .map(|row| (row.variant.clone(), of(&row.variant)))
        .collect();
    let full = by_variant.remove("full").unwrap_or_default();
    for row in rows.iter_mut() {
        let mine = by_variant.get(&row.variant).unwrap_or(&full);
        row.per_type_f1 = EntityType::ALL
            .into_iter()
            .filter_map(|kind| {
                let values: Vec<f64> = mine
                    .iter()
                    .filter_map(|t| t.per_type_f1.get(&kind).copied())
                    .collect();
                Some((kind, MeanStd::of(&values)?))
            })
            .collect();
        let pairs = full.len().min(mine.len());
        if row.variant == "full" || pairs == 0 {
            continue;
        }
        let pool = |runs: &[TestPredictions]| -> Vec<_> {
            runs[..pairs]
                .iter()
                .flat_map(|t| t.counts.iter().copied())
                .collect()
        };
        let test = crate::eval::significance::paired_test(
            &pool(&full),
            &pool(mine),
            crate::eval::significance::DEFAULT_RESAMPLES,
            crate::eval::significance::SEED,
        );
        row.p_value = Some(test.p_value);
    }
}

/// Rows in the variants' menu order (others after, by name).
pub(crate) fn rows(runs: &[RunView]) -> Vec<Row> {
    let mut by_variant: BTreeMap<(usize, String), Vec<&RunView>> = BTreeMap::new();
    let menu: Vec<String> = Variant::menu().iter().map(Variant::to_string).collect();
    for run in runs {
        let order = menu
            .iter()
            .position(|v| *v == run.spec.variant)
            .unwrap_or(menu.len());
        by_variant
            .entry((order, run.spec.variant.clone()))
            .or_default()
            .push(run);
    }
    let mut rows: Vec<Row> = by_variant
        .into_iter()
        .map(|((_, variant), runs)| {
            let tests: Vec<_> = runs
                .iter()
                .filter(|r| r.state == State::Finished)
                .filter_map(|r| r.progress.test)
                .collect();
            let column = |f: fn(&crate::run::Scores) -> f64| {
                MeanStd::of(&tests.iter().map(f).collect::<Vec<_>>())
            };
            Row {
                variant,
                finished: tests.len(),
                runs: runs.len(),
                precision: column(|s| s.precision),
                recall: column(|s| s.recall),
                f1: column(|s| s.f1),
                delta_f1: None,
                p_value: None,
                per_type_f1: BTreeMap::new(),
            }
        })
        .collect();
    let full = rows
        .iter()
        .find(|r| r.variant == "full")
        .and_then(|r| r.f1)
        .map(|f| f.mean);
    for row in &mut rows {
        row.delta_f1 = full.zip(row.f1).map(|(full, f1)| f1.mean - full);
    }
    rows
}

/// The output formats of `runs table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Csv,
    /// booktabs rules, the best of each column in bold, a caption naming the tests.
    Latex,
}

fn best(rows: &[Row], column: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    rows.iter().filter_map(column).reduce(f64::max)
}

/// A column's value in a row.
pub(crate) type Column = fn(&Row) -> Option<MeanStd>;

/// The score columns, by name.
pub(crate) const COLUMNS: [(&str, Column); 3] = [
    ("P", |r| r.precision),
    ("R", |r| r.recall),
    ("F1", |r| r.f1),
];

/// The best mean of each of [`COLUMNS`] over the rows.
pub(crate) fn column_bests(rows: &[Row]) -> [Option<f64>; 3] {
    COLUMNS.map(|(_, column)| best(rows, |r| column(r).map(|m| m.mean)))
}

/// Whether `value` is the column's best (the mark of the tables).
pub(crate) fn is_best(value: f64, best: Option<f64>) -> bool {
    best.is_some_and(|b| (value - b).abs() < 1e-9)
}

/// A column of scores in the rendered tables: P/R/F1 over all types, or one type's F1
/// (where the runs' test predictions give it).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ScoreColumn {
    Overall(usize),
    TypeF1(EntityType),
}

impl ScoreColumn {
    fn value(self, row: &Row) -> Option<MeanStd> {
        match self {
            ScoreColumn::Overall(i) => COLUMNS[i].1(row),
            ScoreColumn::TypeF1(kind) => row.per_type_f1.get(&kind).copied(),
        }
    }

    fn name(self) -> String {
        match self {
            ScoreColumn::Overall(i) => COLUMNS[i].0.to_string(),
            ScoreColumn::TypeF1(kind) => format!("{kind} F1"),
        }
    }

    fn latex_name(self) -> String {
        match self {
            ScoreColumn::Overall(i) => ["$P$", "$R$", "$F_1$"][i].to_string(),
            ScoreColumn::TypeF1(kind) => format!("{kind} $F_1$"),
        }
    }

    /// The name of its columns in the CSV (mean and std).
    fn csv_name(self) -> String {
        match self {
            ScoreColumn::Overall(i) => ["p", "r", "f1"][i].to_string(),
            ScoreColumn::TypeF1(kind) => format!("{}_f1", kind.as_str().to_lowercase()),
        }
    }
}

/// P, R and F1, then the per-type F1 of the types some row has.
fn score_columns(rows: &[Row]) -> Vec<ScoreColumn> {
    let overall = (0..COLUMNS.len()).map(ScoreColumn::Overall);
    let types = EntityType::ALL
        .into_iter()
        .filter(|kind| rows.iter().any(|r| r.per_type_f1.contains_key(kind)))
        .map(ScoreColumn::TypeF1);
    overall.chain(types).collect()
}

/// The significance level of the tables' marker (†).
pub(crate) const SIGNIFICANT: f64 = 0.05;

fn significant(row: &Row) -> bool {
    row.p_value.is_some_and(|p| p < SIGNIFICANT)
}

/// What a rendered table shows: its score columns, their bests and the best ΔF1.
struct Layout {
    columns: Vec<ScoreColumn>,
    bests: Vec<Option<f64>>,
    best_delta: Option<f64>,
    with_p: bool,
}

impl Layout {
    fn of(rows: &[Row]) -> Self {
        let columns = score_columns(rows);
        let bests = columns
            .iter()
            .map(|c| best(rows, |r| c.value(r).map(|m| m.mean)))
            .collect();
        let variants: Vec<Row> = rows
            .iter()
            .filter(|r| r.variant != "full")
            .cloned()
            .collect();
        Self {
            columns,
            bests,
            best_delta: best(&variants, |r| r.delta_f1),
            with_p: rows.iter().any(|r| r.p_value.is_some()),
        }
    }

    /// Each score cell of `row` with whether it is its column's best.
    fn cells<'a>(&'a self, row: &'a Row) -> impl Iterator<Item = Option<(MeanStd, bool)>> + 'a {
        self.columns
            .iter()
            .zip(&self.bests)
            .map(|(column, best)| column.value(row).map(|m| (m, is_best(m.mean, *best))))
    }
}

/// The table as Markdown or LaTeX (best of each column in bold, † where p < 0.05) or
/// CSV (a `best` flag per column).
pub(crate) fn render(rows: &[Row], format: Format) -> String {
    let layout = Layout::of(rows);
    match format {
        Format::Md => markdown(rows, &layout),
        Format::Csv => csv(rows, &layout),
        Format::Latex => latex(rows, &layout),
    }
}

/// The table for a paper: variants as rows, P/R/F1 and per-type F1 as mean ± std, ΔF1
/// and (where there are any) p against `full`.
fn latex(rows: &[Row], layout: &Layout) -> String {
    use crate::eval::latex::{Table, bold, escape};
    let mut header = vec!["Variant".to_string()];
    header.extend(layout.columns.iter().map(|c| c.latex_name()));
    header.push("$\\Delta F_1$".into());
    if layout.with_p {
        header.push("$p$".into());
    }
    let body = rows
        .iter()
        .map(|row| {
            let mut cells = vec![escape(&row.variant)];
            cells.extend(layout.cells(row).map(|cell| match cell {
                Some((m, best)) => {
                    let cell = format!("{:.2} $\\pm$ {:.2}", m.mean, m.std);
                    if best { bold(&cell) } else { cell }
                }
                None => "--".into(),
            }));
            let marker = if significant(row) { "$^\\dagger$" } else { "" };
            cells.push(match row.delta_f1 {
                Some(_) if row.variant == "full" => "0".into(),
                Some(d) if is_best(d, layout.best_delta) => bold(&format!("{d:+.2}")) + marker,
                Some(d) => format!("{d:+.2}{marker}"),
                None => "--".into(),
            });
            if layout.with_p {
                cells.push(row.p_value.map_or("--".into(), |p| format!("{p:.3}")));
            }
            cells
        })
        .collect();
    let mut caption = String::from(
        "Test precision, recall and $F_1$: mean $\\pm$ standard deviation over seeds; $\\Delta F_1$ against full; the best of each column in bold.",
    );
    if layout.with_p {
        caption += &format!(
            " $^\\dagger$: $p < {SIGNIFICANT}$. {}.",
            escape(P_VALUE_TEST)
        );
    }
    let align = format!("l{}", "r".repeat(header.len() - 1));
    Table {
        align: &align,
        header,
        rows: body,
        caption,
    }
    .render()
}

fn markdown(rows: &[Row], layout: &Layout) -> String {
    let mut header = vec!["variant".to_string(), "runs".to_string()];
    header.extend(layout.columns.iter().map(|c| c.name()));
    header.push("ΔF1".into());
    if layout.with_p {
        header.push("p".into());
    }
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::ASCII_MARKDOWN)
        .set_header(header);
    for row in rows {
        let mut cells = vec![
            row.variant.clone(),
            format!("{}/{}", row.finished, row.runs),
        ];
        cells.extend(layout.cells(row).map(|cell| match cell {
            Some((m, true)) => format!("**{:.2} ± {:.2}**", m.mean, m.std),
            Some((m, false)) => format!("{:.2} ± {:.2}", m.mean, m.std),
            None => "–".into(),
        }));
        let marker = if significant(row) { "†" } else { "" };
        cells.push(match row.delta_f1 {
            Some(_) if row.variant == "full" => "0".into(),
            Some(d) if is_best(d, layout.best_delta) => format!("**{d:+.2}**{marker}"),
            Some(d) => format!("{d:+.2}{marker}"),
            None => "–".into(),
        });
        if layout.with_p {
            cells.push(row.p_value.map_or("–".into(), |p| format!("{p:.3}")));
        }
        table.add_row(cells);
    }
    let caption = if layout.with_p {
        format!("\nP/R/F1: test, mean ± std over seeds. †: p < {SIGNIFICANT}. {P_VALUE_TEST}.\n")
    } else {
        String::new()
    };
    table.to_string() + "\n" + &caption
}

// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
fn csv(rows: &[Row], layout: &Layout) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    // Writing records to memory cannot fail: every record has the header's length.
    let mut record = |cells: &[String]| out.write_record(cells).expect("an in-memory CSV");
    let mut header: Vec<String> = ["variant", "finished", "runs"].map(String::from).to_vec();
    for column in &layout.columns {
        let name = column.csv_name();
        header.extend([format!("{name}_mean"), format!("{name}_std")]);
    }
    header.extend(["delta_f1", "best", "p_value"].map(String::from));
    record(&header);
    for row in rows {
        let mut cells = vec![
            row.variant.clone(),
            row.finished.to_string(),
            row.runs.to_string(),
        ];
        let mut best_of = Vec::new();
        for (column, cell) in layout.columns.iter().zip(layout.cells(row)) {
            match cell {
                Some((m, best)) => {
                    cells.push(format!("{:.4}", m.mean));
                    cells.push(format!("{:.4}", m.std));
                    if best {
                        best_of.push(column.name().replace(' ', "_"));
                    }
                }
                None => cells.extend([String::new(), String::new()]),
            }
        }
        cells.push(row.delta_f1.map_or(String::new(), |d| format!("{d:.4}")));
        cells.push(best_of.join(" "));
        cells.push(row.p_value.map_or(String::new(), |p| format!("{p:.4}")));
        record(&cells);
    }
    let bytes = out.into_inner().expect("an in-memory CSV flushes");
    String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let m = MeanStd::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(m.mean, 2.0);
        assert!((m.std - 1.0).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[5.0]).unwrap().std, 0.0);
        assert!(MeanStd::of(&[]).is_none());
    }

    fn row(variant: &str, f1: f64) -> Row {
        let score = Some(MeanStd { mean: f1, std: 0.5 });
        Row {
            variant: variant.into(),
            finished: 1,
            runs: 2,
            precision: score,
            recall: score,
            f1: score,
            delta_f1: None,
            p_value: None,
            per_type_f1: BTreeMap::new(),
        }
    }

    #[test]
    fn csv_quotes_a_name_with_a_comma_or_a_quote() {
        let rows = [row("full", 70.0), row("a, \"b\"", 71.0)];
        let text = render(&rows, Format::Csv);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[1],
            "full,1,2,70.0000,0.5000,70.0000,0.5000,70.0000,0.5000,,,"
        );
        assert_eq!(
            lines[2],
            "\"a, \"\"b\"\"\",1,2,71.0000,0.5000,71.0000,0.5000,71.0000,0.5000,,P R F1,"
        );
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let names: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect();
        assert_eq!(names, ["full", "a, \"b\""]);
    }

    #[test]
    fn the_latex_table_bolds_the_best_escapes_names_and_names_its_test() {
        let mut rows = vec![row("full", 70.0), row("no_discrete & 50%", 71.0)];
        rows[1].delta_f1 = Some(1.0);
        rows[1].p_value = Some(0.0123);
        insta::assert_snapshot!(render(&rows, Format::Latex));
    }

    #[test]
    fn markdown_marks_the_best_of_each_column() {
        let text = render(&[row("full", 70.0), row("none", 71.0)], Format::Md);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "| variant | runs | P                | R                | F1               | ΔF1 |"
        );
        assert!(lines[1].starts_with("|---------|------|"), "{text}");
        assert_eq!(
            lines[3],
            "| none    | 1/2  | **71.00 ± 0.50** | **71.00 ± 0.50** | **71.00 ± 0.50** | –   |"
        );
    }
}

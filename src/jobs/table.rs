//! The results table: one row per variant, P/R/F1 as mean ± std over seeds, ΔF1 against
//! the full model, the best of each column marked.

use std::collections::BTreeMap;

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
    /// every seed ([`with_p_values`]).
    pub p_value: Option<f64>,
}

/// The test behind [`Row::p_value`], for a table's caption.
pub(crate) const P_VALUE_TEST: &str = "p: approximate randomisation against full, 1000 rounds, over the test tweets of every seed pooled (seed i of a variant paired with seed i of full)";

/// Each finished run's test counts per tweet (from its test-predictions.txt and its
/// data's test split), by seed; runs without them are left out.
fn test_counts(runs: &[&RunView]) -> Vec<(u64, Vec<crate::eval::score::Counts>)> {
    let mut counts: Vec<(u64, Vec<crate::eval::score::Counts>)> = runs
        .iter()
        .filter(|r| r.state == State::Finished)
        .filter_map(|r| {
            let files = &r.run.files;
            let config = crate::run::TrainConfig::load(&files.train_config(), &[]).ok()?;
            let gold_path = crate::data::split_path(&config.data, "test");
            let gold = crate::data::conll::read_conll(&gold_path).ok()?;
            let predicted = crate::data::conll::read_conll(&files.test_predictions()).ok()?;
            let spans = |tweets: &[crate::data::Tweet]| -> Vec<Vec<crate::data::Span>> {
                tweets
                    .iter()
                    .map(|t| crate::data::spans::spans_from_tags(&t.tags))
                    .collect()
            };
            let counts = crate::eval::significance::tweet_counts(&spans(&gold), &spans(&predicted));
            Some((r.spec.seed, counts))
        })
        .collect();
    counts.sort_by_key(|(seed, _)| *seed);
    counts
}

/// Fills each variant's p-value against `full`: its seeds paired in order with full's,
/// their tweets pooled.
pub(crate) fn with_p_values(rows: &mut [Row], runs: &[RunView]) {
    let of = |variant: &str| -> Vec<&RunView> {
        runs.iter().filter(|r| r.spec.variant == variant).collect()
    };
    let full = test_counts(&of("full"));
    for row in rows.iter_mut().filter(|r| r.variant != "full") {
        let mine = test_counts(&of(&row.variant));
        let pairs = full.len().min(mine.len());
        if pairs == 0 {
            continue;
        }
        let pool = |runs: &[(u64, Vec<crate::eval::score::Counts>)]| -> Vec<_> {
            runs[..pairs]
                .iter()
                .flat_map(|(_, c)| c.iter().copied())
                .collect()
        };
        let test = crate::eval::significance::paired_test(
            &pool(&full),
            &pool(&mine),
            crate::eval::significance::DEFAULT_RESAMPLES,
            2018,
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

/// The table as Markdown (best of each column in bold) or CSV (a `best` flag per column).
pub(crate) fn render(rows: &[Row], format: Format) -> String {
    let bests = column_bests(rows);
    let best_delta = best(
        &rows
            .iter()
            .filter(|r| r.variant != "full")
            .cloned()
            .collect::<Vec<_>>(),
        |r| r.delta_f1,
    );
    match format {
        Format::Md => markdown(rows, &bests, best_delta),
        Format::Csv => csv(rows, &bests),
        Format::Latex => latex(rows, &bests, best_delta),
    }
}

/// The table for a paper: variants as rows, P/R/F1 as mean ± std, ΔF1 and (where there
/// are any) p against `full`.
fn latex(rows: &[Row], bests: &[Option<f64>; 3], best_delta: Option<f64>) -> String {
    use crate::eval::latex::{Table, bold, escape};
    let with_p = rows.iter().any(|r| r.p_value.is_some());
    let mut header: Vec<String> = ["Variant", "$P$", "$R$", "$F_1$", "$\\Delta F_1$"]
        .map(String::from)
        .to_vec();
    if with_p {
        header.push("$p$".into());
    }
    let body = rows
        .iter()
        .map(|row| {
            let mut cells = vec![escape(&row.variant)];
            for ((_, column), best) in COLUMNS.iter().zip(bests) {
                cells.push(match column(row) {
                    Some(m) => {
                        let cell = format!("{:.2} $\\pm$ {:.2}", m.mean, m.std);
                        if is_best(m.mean, *best) {
                            bold(&cell)
                        } else {
                            cell
                        }
                    }
                    None => "--".into(),
                });
            }
            cells.push(match row.delta_f1 {
                Some(_) if row.variant == "full" => "0".into(),
                Some(d) if is_best(d, best_delta) => bold(&format!("{d:+.2}")),
                Some(d) => format!("{d:+.2}"),
                None => "--".into(),
            });
            if with_p {
                cells.push(row.p_value.map_or("--".into(), |p| format!("{p:.3}")));
            }
            cells
        })
        .collect();
    let mut caption = String::from(
        "Test precision, recall and $F_1$: mean $\\pm$ standard deviation over seeds; $\\Delta F_1$ against full; the best of each column in bold.",
    );
    if with_p {
        caption += &format!(" {}.", escape(P_VALUE_TEST));
    }
    let align = if with_p { "lrrrrr" } else { "lrrrr" };
    Table {
        align,
        header,
        rows: body,
        caption,
    }
    .render()
}

fn markdown(rows: &[Row], bests: &[Option<f64>; 3], best_delta: Option<f64>) -> String {
    let with_p = rows.iter().any(|r| r.p_value.is_some());
    let mut header = vec!["variant", "runs", "P", "R", "F1", "ΔF1"];
    if with_p {
        header.push("p");
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
        for ((_, column), best) in COLUMNS.iter().zip(bests) {
            cells.push(match column(row) {
                Some(m) if is_best(m.mean, *best) => format!("**{:.2} ± {:.2}**", m.mean, m.std),
                Some(m) => format!("{:.2} ± {:.2}", m.mean, m.std),
                None => "–".into(),
            });
        }
        cells.push(match row.delta_f1 {
            Some(_) if row.variant == "full" => "0".into(),
            Some(d) if is_best(d, best_delta) => format!("**{d:+.2}**"),
            Some(d) => format!("{d:+.2}"),
            None => "–".into(),
        });
        if with_p {
            cells.push(row.p_value.map_or("–".into(), |p| format!("{p:.3}")));
        }
        table.add_row(cells);
    }
    let caption = if with_p {
        format!("\nP/R/F1: test, mean ± std over seeds. {P_VALUE_TEST}.\n")
    } else {
        String::new()
    };
    table.to_string() + "\n" + &caption
}

// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
fn csv(rows: &[Row], bests: &[Option<f64>; 3]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    // Writing records to memory cannot fail: every record has the header's length.
    let mut record = |cells: &[String]| out.write_record(cells).expect("an in-memory CSV");
    record(
        &[
            "variant", "finished", "runs", "p_mean", "p_std", "r_mean", "r_std", "f1_mean",
            "f1_std", "delta_f1", "best", "p_value",
        ]
        .map(String::from),
    );
    for row in rows {
        let mut cells = vec![
            row.variant.clone(),
            row.finished.to_string(),
            row.runs.to_string(),
        ];
        let mut best_of = Vec::new();
        for ((name, column), best) in COLUMNS.iter().zip(bests) {
            match column(row) {
                Some(m) => {
                    cells.push(format!("{:.4}", m.mean));
                    cells.push(format!("{:.4}", m.std));
                    if is_best(m.mean, *best) {
                        best_of.push(*name);
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

//! Tables for papers: LaTeX with booktabs rules (`\toprule`, `\midrule`, `\bottomrule`),
//! the names in it escaped, a caption line under it. Needs `\usepackage{booktabs}`.

/// `text` with LaTeX's special characters escaped, so that a name prints as it is.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A cell in bold.
pub(crate) fn bold(cell: &str) -> String {
    format!("\\textbf{{{cell}}}")
}

/// A table: `align` (one letter a column, e.g. `lrrr`), the header and the rows (cells
/// already LaTeX), and the caption (LaTeX).
pub(crate) struct Table<'a> {
    pub align: &'a str,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub caption: String,
}

impl Table<'_> {
    pub(crate) fn render(&self) -> String {
        let line = |cells: &[String]| format!("{} \\\\\n", cells.join(" & "));
        let mut out = String::from("\\begin{table}[t]\n\\centering\n");
        out += &format!("\\begin{{tabular}}{{{}}}\n\\toprule\n", self.align);
        out += &line(&self.header);
        out += "\\midrule\n";
        for row in &self.rows {
            out += &line(row);
        }
        out += "\\bottomrule\n\\end{tabular}\n";
        out += &format!("\\caption{{{}}}\n\\end{{table}}\n", self.caption);
        out
    }
}

/// `score --format latex`: P/R/F1 per entity type and over all (micro), one model.
pub(crate) fn score_table(report: &crate::eval::score::ScoreReport) -> String {
    let cells = |name: &str, prf: &crate::eval::score::Prf| {
        vec![
            name.to_string(),
            format!("{:.2}", prf.precision),
            format!("{:.2}", prf.recall),
            format!("{:.2}", prf.f1),
        ]
    };
    let mut rows: Vec<Vec<String>> = report
        .per_type
        .iter()
        .map(|(kind, score)| cells(kind.as_str(), &score.prf))
        .collect();
    rows.push(cells("All (micro)", &report.micro.prf));
    Table {
        align: "lrrr",
        header: ["Type", "$P$", "$R$", "$F_1$"].map(String::from).to_vec(),
        rows,
        caption: format!(
            "Entity-level precision, recall and $F_1$ (exact boundaries and type) over {} tweets, {} gold entities.",
            report.tweets, report.gold_entities
        ),
    }
    .render()
}

/// `eval --compare B --format latex`: both models' P/R/F1 and per-type $F_1$, the best
/// of each column in bold, ΔF1 with its interval and p-value in the caption.
pub(crate) fn compare_table(
    models: [(&str, &crate::eval::score::ScoreReport); 2],
    significance: &crate::eval::significance::Significance,
) -> String {
    use crate::data::tags::EntityType;
    let values = |r: &crate::eval::score::ScoreReport| -> Vec<f64> {
        let mut v = vec![r.micro.prf.precision, r.micro.prf.recall, r.micro.prf.f1];
        v.extend(
            EntityType::ALL
                .iter()
                .map(|t| r.per_type.get(t).map_or(0.0, |s| s.prf.f1)),
        );
        v
    };
    let (a, b) = (values(models[0].1), values(models[1].1));
    let rows = models
        .iter()
        .zip([(&a, &b), (&b, &a)])
        .map(|((name, _), (mine, theirs))| {
            let mut cells = vec![escape(name)];
            for (v, other) in mine.iter().zip(theirs.iter()) {
                let cell = format!("{v:.2}");
                cells.push(if v >= other { bold(&cell) } else { cell });
            }
            cells
        })
        .collect();
    let mut header = ["Model", "$P$", "$R$", "$F_1$"].map(String::from).to_vec();
    header.extend(
        EntityType::ALL
            .iter()
            .map(|t| format!("{} $F_1$", t.as_str())),
    );
    let [low, high] = significance.interval;
    Table {
        align: "lrrrrrrr",
        header,
        rows,
        caption: format!(
            "$\\Delta F_1$ (B $-$ A) $= {:+.2}$, 95\\% paired-bootstrap interval $[{low:+.2}, {high:+.2}]$ over the test tweets, approximate randomisation $p = {:.3}$ ({} resamples each, seed {}). The better of each column in bold.",
            significance.delta_f1, significance.p_value, significance.resamples, significance.seed
        ),
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(
            escape("a_b & 50% $x$ #1 {y} ~^\\"),
            "a\\_b \\& 50\\% \\$x\\$ \\#1 \\{y\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}"
        );
    }

    #[test]
    fn a_table_has_booktabs_rules_and_its_caption() {
        let table = Table {
            align: "lr",
            header: vec!["Variant".into(), "F1".into()],
            rows: vec![vec!["full".into(), bold("70.00")]],
            caption: "Test F1.".into(),
        };
        assert_eq!(
            table.render(),
            "\\begin{table}[t]\n\\centering\n\\begin{tabular}{lr}\n\\toprule\nVariant & F1 \\\\\n\\midrule\nfull & \\textbf{70.00} \\\\\n\\bottomrule\n\\end{tabular}\n\\caption{Test F1.}\n\\end{table}\n"
        );
    }
}

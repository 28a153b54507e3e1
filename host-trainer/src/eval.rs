//! `host-trainer eval`: test accuracy of saved parameters, per-class accuracy, the most
//! confused pairs, and the confusion matrix as a picture.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::prelude::*;

/// `counts[true][predicted]` over a labelled set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    /// Rows: the true class; columns: the predicted one.
    pub counts: Vec<Vec<usize>>,
}

impl Confusion {
    /// Counts the predictions (`argmax` of each row of `logits`) against `labels`.
    pub fn new(classes: usize, predicted: &[usize], labels: &[u8]) -> Result<Self> {
        if predicted.len() != labels.len() {
            bail!(
                "{} predictions for {} labels",
                predicted.len(),
                labels.len()
            );
        }
        let mut counts = vec![vec![0; classes]; classes];
        for (&p, &l) in predicted.iter().zip(labels) {
            let l = l as usize;
            if l >= classes || p >= classes {
                bail!("label {l} or prediction {p} is not one of {classes} classes");
            }
            counts[l][p] += 1;
        }
        Ok(Confusion { counts })
    }

    /// Fraction right over all samples.
    pub fn accuracy(&self) -> f64 {
        let total: usize = self.counts.iter().flatten().sum();
        let right: usize = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        right as f64 / total.max(1) as f64
    }

    /// `(class, right, samples)` per class.
    pub fn per_class(&self) -> Vec<(usize, usize, usize)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(c, row)| (c, row[c], row.iter().sum()))
            .collect()
    }

    /// The `n` largest off-diagonal cells as `(true, predicted, count)`, largest first
    /// (ties: lower true class, then lower predicted class); zero cells left out.
    pub fn most_confused(&self, n: usize) -> Vec<(usize, usize, usize)> {
        let mut cells: Vec<(usize, usize, usize)> = self
            .counts
            .iter()
            .enumerate()
            .flat_map(|(t, row)| row.iter().enumerate().map(move |(p, &c)| (t, p, c)))
            .filter(|&(t, p, c)| t != p && c > 0)
            .collect();
        cells.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        cells.truncate(n);
        cells
    }

    /// The report `eval` prints.
    pub fn report(&self) -> String {
        self.report_named(&[])
    }

    /// [`Confusion::report`] with the classes' names after their numbers (none: the
    /// numbers alone, as for MNIST).
    pub fn report_named(&self, names: &[String]) -> String {
        // A name that is the number (a folder of classes `0` to `9`) is not repeated.
        let label = |c: usize| match names.get(c) {
            Some(n) if *n != c.to_string() => format!("{c} {n}"),
            _ => c.to_string(),
        };
        let mut s = String::new();
        let _ = writeln!(s, "per-class accuracy:");
        for (c, right, n) in self.per_class() {
            let _ = writeln!(
                s,
                "  {}: {:.4} ({right}/{n})",
                label(c),
                right as f64 / n.max(1) as f64
            );
        }
        let _ = writeln!(s, "most confused (true -> predicted: count):");
        for (t, p, c) in self.most_confused(5) {
            let _ = writeln!(s, "  {} -> {}: {c}", label(t), label(p));
        }
        s
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
        title: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        use plotters::coord::ranged1d::SegmentValue::{CenterOf, Exact};
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let k = self.counts.len();
        root.fill(&WHITE)?;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(44)
            .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())?;
        // Row 0 (true class 0) at the top, as matrices are read. `(0..k - 1)` segmented
        // is k lanes, 0 to k - 1.
        let class = |v: &plotters::coord::ranged1d::SegmentValue<usize>, flip: bool| match v {
            CenterOf(i) if *i < k => (if flip { k - 1 - i } else { *i }).to_string(),
            _ => String::new(),
        };
        c.configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .x_labels(k)
            .y_labels(k)
            .x_label_formatter(&|v| class(v, false))
            .y_label_formatter(&|v| class(v, true))
            .draw()?;
        // Off-diagonal cells on their own scale (the diagonal would wash them out).
        let worst = self.most_confused(1).first().map_or(1, |c| c.2).max(1);
        let centre = Pos::new(HPos::Center, VPos::Center);
        for (t, row) in self.counts.iter().enumerate() {
            let n: usize = row.iter().sum();
            for (p, &v) in row.iter().enumerate() {
                let y = k - 1 - t;
                let (fill, ink) = if t == p {
                    let f = v as f64 / n.max(1) as f64;
                    let g = |a: f64| (255.0 - f * a) as u8;
                    (
                        RGBColor(g(200.0), g(90.0), g(200.0)),
                        if f > 0.5 { WHITE } else { BLACK },
                    )
                } else {
                    let f = (v as f64 / worst as f64).sqrt();
                    let g = (255.0 - f * 200.0) as u8;
                    (RGBColor(255, g, g), if f > 0.85 { WHITE } else { BLACK })
                };
                c.draw_series(std::iter::once(Rectangle::new(
                    [(Exact(p), Exact(y)), (Exact(p + 1), Exact(y + 1))],
                    fill.filled(),
                )))?;
                if v > 0 {
                    let style = ("sans-serif", 14).into_font().color(&ink).pos(centre);
                    c.draw_series(std::iter::once(Text::new(
                        v.to_string(),
                        (CenterOf(p), CenterOf(y)),
                        style,
                    )))?;
                }
            }
        }
        root.present()?;
        Ok(())
    }

    /// Draws the matrix to `<stem>.png` and `<stem>.svg`; returns both paths.
    pub fn picture(&self, stem: &Path, title: &str) -> Result<[PathBuf; 2]> {
        crate::plot::save_picture(&Matrix(self, title), stem, (640, 640))
    }
}

/// A confusion matrix with its title, as a picture.
struct Matrix<'a>(&'a Confusion, &'a str);

impl crate::plot::Picture for Matrix<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> crate::plot::DrawResult
    where
        DB::ErrorType: 'static,
    {
        self.0.draw(root, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_pairs() {
        let labels = [0u8, 0, 1, 1, 1, 2, 2, 2];
        let pred = [0usize, 1, 1, 2, 2, 2, 2, 0];
        let c = Confusion::new(3, &pred, &labels).unwrap();
        assert_eq!(c.counts, vec![vec![1, 1, 0], vec![0, 1, 2], vec![1, 0, 2]]);
        assert_eq!(c.accuracy(), 4.0 / 8.0);
        assert_eq!(c.per_class()[1], (1, 1, 3));
        assert_eq!(c.most_confused(2), vec![(1, 2, 2), (0, 1, 1)]);
        assert!(c.report().contains("  1 -> 2: 2"));
        let names = ["cat", "dog", "eel"].map(String::from);
        let r = c.report_named(&names);
        assert!(r.contains("  1 dog -> 2 eel: 2"), "{r}");
        assert!(r.contains("  0 cat: 0.5000 (1/2)"), "{r}");
        let digits = ["0", "1", "2"].map(String::from);
        assert_eq!(c.report_named(&digits), c.report());
        assert!(Confusion::new(3, &[0], &[3]).is_err());
        assert!(Confusion::new(3, &[0, 1], &[0]).is_err());
        let dir = std::env::temp_dir().join(format!("mc-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let [png, svg] = c.picture(&dir.join("m"), "test").unwrap();
        assert!(png.exists() && svg.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

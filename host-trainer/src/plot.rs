//! Pictures of a run, drawn with plotters as PNG and SVG: training curves from a metrics
//! file (loss, and batch and test accuracy, against steps).
//!
//! Text needs a TrueType font, read at run time: `$MICROCONV_FONT`, else DejaVu Sans or
//! Liberation Sans where Debian, Fedora and Arch put them (`apt install
//! fonts-dejavu-core`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Where a sans-serif TrueType font is looked for, after `$MICROCONV_FONT`.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers the font once per process as plotters' "sans-serif".
pub fn font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("MICROCONV_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        let Some((path, bytes)) = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
        else {
            return Err(format!(
                "no TrueType font found for the plots (looked at $MICROCONV_FONT and {}); install fonts-dejavu-core or set MICROCONV_FONT",
                FONT_PATHS.join(", ")
            ));
        };
        // plotters keeps fonts for the whole process; so does this one registration.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a usable TrueType font", path.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One row of a metrics file (see `train::METRICS_HEADER`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsRow {
    /// Step.
    pub step: f64,
    /// Mean training loss since the previous row.
    pub loss: Option<f64>,
    /// Accuracy on the batch about to be trained.
    pub batch_accuracy: Option<f64>,
    /// Test-set accuracy.
    pub test_accuracy: Option<f64>,
    /// Accuracy on the validation images (absent in files of earlier builds).
    pub validation_accuracy: Option<f64>,
}

/// Reads a metrics CSV written by `train`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let bytes = crate::bytes::read_at_most(path, crate::train::METRICS_MAX_BYTES, "metrics file")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{}: not a metrics file (not UTF-8 text)", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| -> Result<Option<f64>> {
            match f.get(i).copied().unwrap_or("") {
                "" => Ok(None),
                s => s
                    .parse()
                    .map(Some)
                    .map_err(|_| anyhow!("{}:{}: `{s}` is not a number", path.display(), n + 1)),
            }
        };
        let Some(step) = num(0)? else {
            bail!("{}:{}: no step", path.display(), n + 1);
        };
        rows.push(MetricsRow {
            step,
            loss: num(1)?,
            batch_accuracy: num(2)?,
            test_accuracy: num(3)?,
            // Absent in files of earlier builds, whose 5th column is the learning rate.
            validation_accuracy: if f.len() >= 7 { num(4)? } else { None },
        });
    }
    Ok(rows)
}

/// A tick label without float noise: 0.7, 0.05, 2.
fn short(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A chart of loss (log scale) against steps.
type LossChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, LogCoord<f64>>>;

/// The left panel of both charts: loss per sample against steps, log scale, its range
/// from the (positive, finite) losses given (`0.01..10` if none).
fn loss_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    last: f64,
    losses: impl Iterator<Item = f64>,
) -> Result<LossChart<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = losses
        .filter(|l| l.is_finite() && *l > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), l| {
            (lo.min(l), hi.max(l))
        });
    let (lo, hi) = if lo.is_finite() {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.01, 10.0)
    };
    let mut c = ChartBuilder::on(area)
        .caption("training loss per sample (log scale)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last, (lo..hi).log_scale())?;
    c.configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| short(*y))
        .light_line_style(WHITE)
        .draw()?;
    Ok(c)
}

/// What drawing on a plotters backend returns.
pub type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn curves_on<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[MetricsRow],
    title: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    let last = rows.iter().map(|r| r.step).fold(1.0, f64::max);
    let losses: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            r.loss
                .filter(|l| l.is_finite() && *l > 0.0)
                .map(|l| (r.step, l))
        })
        .collect();
    let mut c = loss_chart(&left, last, losses.iter().map(|p| p.1))?;
    c.draw_series(LineSeries::new(losses, BLUE.stroke_width(2)))?
        .label("mean since the previous point")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;

    let batch: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.batch_accuracy.map(|a| (r.step, a)))
        .collect();
    let test: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.test_accuracy.map(|a| (r.step, a)))
        .collect();
    let validation: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.validation_accuracy.map(|a| (r.step, a)))
        .collect();
    // The first point (an untrained network, about 0.1) would flatten the rest.
    let floor = batch
        .iter()
        .chain(&test)
        .chain(&validation)
        .filter(|p| p.0 > 0.0)
        .map(|p| p.1)
        .fold(1.0, f64::min)
        .min(0.9);
    let mut c = ChartBuilder::on(&right)
        .caption("accuracy", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last, (floor - 0.02).max(0.0)..1.0)?;
    c.configure_mesh()
        .x_desc("step")
        .y_desc("accuracy")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .light_line_style(WHITE)
        .draw()?;
    c.draw_series(LineSeries::new(
        batch,
        RGBColor(150, 150, 150).stroke_width(1),
    ))?
    .label("batch about to be trained")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(150, 150, 150)));
    c.draw_series(LineSeries::new(test.clone(), RED.stroke_width(2)))?
        .label("test set")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
    c.draw_series(test.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
    if !validation.is_empty() {
        let green = RGBColor(0, 150, 0);
        c.draw_series(LineSeries::new(validation.clone(), green.stroke_width(2)))?
            .label("validation (held out of the training images)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], green.stroke_width(2))
            });
        c.draw_series(
            validation
                .iter()
                .map(|&p| Circle::new(p, 3, green.filled())),
        )?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

/// `<stem>.png` and `<stem>.svg` (suffixes appended, whatever dots `stem` has).
pub fn with_suffixes(stem: &Path) -> [PathBuf; 2] {
    [".png", ".svg"].map(|ext| {
        let mut s = stem.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    })
}

/// Something drawn on any plotters backend, saved as PNG and SVG by [`save_picture`].
pub trait Picture {
    /// Draws the picture on `root`.
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// Draws `p` (`size` pixels) to `<stem>.png` and `<stem>.svg` (`stem` plus those
/// suffixes); returns both paths.
pub fn save_picture(p: &impl Picture, stem: &Path, size: (u32, u32)) -> Result<[PathBuf; 2]> {
    font()?;
    let [png, svg] = with_suffixes(stem);
    p.draw(BitMapBackend::new(&png, size).into_drawing_area())
        .map_err(|e| anyhow!("cannot draw {}: {e}", png.display()))?;
    p.draw(SVGBackend::new(&svg, size).into_drawing_area())
        .map_err(|e| anyhow!("cannot draw {}: {e}", svg.display()))?;
    Ok([png, svg])
}

struct Curves<'a>(&'a [MetricsRow], &'a str);

impl Picture for Curves<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        curves_on(root, self.0, self.1)
    }
}

/// Draws the training curves of `rows` to `<stem>.png` and `<stem>.svg`; returns both paths.
pub fn curves(rows: &[MetricsRow], stem: &Path, title: &str) -> Result<[PathBuf; 2]> {
    save_picture(&Curves(rows, title), stem, (1200, 480))
}

/// One run in a comparison chart: its name, mean loss per sample and batch accuracy
/// against steps.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(step, mean loss per sample)`.
    pub loss: Vec<(f64, f64)>,
    /// `(step, accuracy)`.
    pub accuracy: Vec<(f64, f64)>,
}

const PALETTE: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn compare_on<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[Series],
    title: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    let points = runs.iter().flat_map(|r| r.loss.iter().chain(&r.accuracy));
    let last = points.map(|p| p.0).fold(1.0, f64::max);
    let losses = runs.iter().flat_map(|r| &r.loss).map(|p| p.1);
    let mut c = loss_chart(&left, last, losses)?;
    // Earlier runs drawn wider, so that equal curves (log-softmax and fused) both show.
    let width = |i: usize| 2 + 2 * (runs.len() - 1 - i) as u32;
    for (i, (r, &colour)) in runs.iter().zip(PALETTE.iter().cycle()).enumerate() {
        let pts: Vec<(f64, f64)> = r.loss.iter().copied().filter(|p| p.1 > 0.0).collect();
        c.draw_series(LineSeries::new(pts, colour.stroke_width(width(i))))?
            .label(r.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    let mut c = ChartBuilder::on(&right)
        .caption(
            "accuracy on the batch about to be trained",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last, 0.0..1.0)?;
    c.configure_mesh()
        .x_desc("step")
        .y_desc("accuracy")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(WHITE)
        .draw()?;
    for (i, (r, &colour)) in runs.iter().zip(PALETTE.iter().cycle()).enumerate() {
        c.draw_series(LineSeries::new(
            r.accuracy.clone(),
            colour.stroke_width(width(i)),
        ))?
        .label(r.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

struct Compare<'a>(&'a [Series], &'a str);

impl Picture for Compare<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        compare_on(root, self.0, self.1)
    }
}

/// Draws several runs on one chart (loss and accuracy side by side) to `<stem>.png` and
/// `<stem>.svg`; returns both paths.
pub fn compare(runs: &[Series], stem: &Path, title: &str) -> Result<[PathBuf; 2]> {
    save_picture(&Compare(runs, title), stem, (1200, 480))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_drawn_from_a_metrics_file() {
        let dir = std::env::temp_dir().join(format!("mc-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("m.csv");
        std::fs::write(
            &csv,
            "step,loss,batch_accuracy,test_accuracy,lr,seconds\n0,,0.1,,1e-3,0\n100,0.9,0.8,,1e-3,1\n200,0.3,0.95,0.96,1e-3,2\n",
        )
        .unwrap();
        let rows = read_metrics(&csv).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].test_accuracy, Some(0.96));
        assert_eq!(rows[0].loss, None);
        let [png, svg] = curves(&rows, &dir.join("c"), "test").unwrap();
        let img = std::fs::read(&png).unwrap();
        assert_eq!(&img[1..4], b"PNG");
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("accuracy"),
            "{svg:.200}"
        );
        let runs = [("naive", 23.0, 0.1), ("fused", 0.1, 0.98)].map(|(n, l, a)| Series {
            name: n.to_string(),
            loss: vec![(100.0, l), (200.0, l / 2.0)],
            accuracy: vec![(0.0, 0.1), (100.0, a)],
        });
        let [png, _] = compare(&runs, &dir.join("r"), "test").unwrap();
        assert!(png.exists());
        std::fs::write(&csv, "step,loss\n1,x\n").unwrap();
        let e = read_metrics(&csv).unwrap_err().to_string();
        assert!(e.contains("m.csv:2: `x` is not a number"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! PNG bar charts with plotters: one chart per figure and metric, a group of bars
//! per workload, a bar per mode (missing or failed measurements leave a gap).

use std::path::Path;

use plotters::prelude::*;

use crate::report::Rec;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Loads the font plotters draws text with (Debian's fonts-dejavu-core).
pub fn init_font() -> Result<(), String> {
    let bytes = std::fs::read(FONT).map_err(|e| {
        format!("{FONT}: {e} (apt-get install --no-install-recommends fonts-dejavu-core)")
    })?;
    // plotters keeps fonts for the life of the program.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{FONT}: not a font plotters can read"))
}

const COLORS: [RGBColor; 6] = [
    RGBColor(90, 90, 90),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 114, 178),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
];

/// Draws the records of one metric (all of one figure) to `path`.
pub fn bars(path: &Path, title: &str, metric: &str, recs: &[&Rec]) -> Result<(), String> {
    let mut modes: Vec<&str> = Vec::new();
    let mut loads: Vec<&str> = Vec::new();
    for r in recs {
        if !modes.contains(&r.mode.as_str()) {
            modes.push(&r.mode);
        }
        if !loads.contains(&r.workload.as_str()) {
            loads.push(&r.workload);
        }
    }
    let slots = modes.len() + 1; // a gap between groups
    let n = (loads.len() * slots) as i32;
    let ymax = recs
        .iter()
        .filter_map(|r| r.value.as_ref().ok().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.4; // headroom for the legend
    let e = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let width = (260 + 70 * n).clamp(700, 1800) as u32;
    let root = BitMapBackend::new(path, (width, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..ymax)
        .map_err(|x| e(&x))?;
    let centre = |x: i32| -> String {
        let (g, s) = ((x as usize) / slots, (x as usize) % slots);
        if s == (modes.len().saturating_sub(1)) / 2 && g < loads.len() {
            loads[g].to_string()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n as usize + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(x) => centre(*x),
            _ => String::new(),
        })
        .y_desc(metric)
        .y_label_formatter(&|v| crate::report::num(*v))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    for (mi, mode) in modes.iter().enumerate() {
        let color = COLORS[mi % COLORS.len()];
        let bars: Vec<Rectangle<(SegmentValue<i32>, f64)>> = loads
            .iter()
            .enumerate()
            .filter_map(|(li, load)| {
                let v = recs
                    .iter()
                    .find(|r| r.workload == *load && r.mode == *mode)?
                    .value
                    .as_ref()
                    .ok()
                    .copied()?;
                let x = (li * slots + mi) as i32;
                Some(Rectangle::new(
                    [
                        (SegmentValue::Exact(x), 0.0),
                        (SegmentValue::Exact(x + 1), v),
                    ],
                    color.filled(),
                ))
            })
            .collect();
        // A failed measurement is marked where its bar would be.
        let failed: Vec<Text<'_, (SegmentValue<i32>, f64), &str>> = loads
            .iter()
            .enumerate()
            .filter(|(_, load)| {
                recs.iter()
                    .any(|r| r.workload == **load && r.mode == *mode && r.value.is_err())
            })
            .map(|(li, _)| {
                Text::new(
                    "failed",
                    (SegmentValue::Exact((li * slots + mi) as i32), ymax * 0.02),
                    ("sans-serif", 11).into_font().color(&color),
                )
            })
            .collect();
        chart.draw_series(failed).map_err(|x| e(&x))?;
        chart
            .draw_series(bars)
            .map_err(|x| e(&x))?
            .label(*mode)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

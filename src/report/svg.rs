//! Minimal SVG charts: line charts, bar charts and a confusion-matrix heat map.
use super::esc;
use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const W: f64 = 520.0;
const H: f64 = 300.0;
const L: f64 = 56.0;
const R: f64 = 16.0;
const T: f64 = 30.0;
const B: f64 = 60.0;

fn nice_range(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Axis ticks inside [lo, hi]: multiples of a step of 1, 2 or 5 times a power of ten giving at
/// most 6 ticks; with `integer` (every value a whole number, e.g. epochs) the step is at least 1,
/// so no tick falls between two whole values.
fn nice_ticks(lo: f64, hi: f64, integer: bool) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return Vec::new();
    }
    if hi - lo < 1e-12 {
        return vec![lo];
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag);
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // multiples of the step, rounded to it so 0.1 * 3 prints as 0.3
    let digits = (-step.log10().floor()).max(0.0) as i32;
    let round = |v: f64| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
    (first..=last).map(|i| round(i as f64 * step)).collect()
}

/// An SVG chart canvas with a white background and a title.
fn open_chart(title: &str) -> String {
    let mut s = String::new();
    let _ = write!(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">");
    let _ = write!(
        s,
        "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/><text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
        W / 2.0,
        esc(title)
    );
    s
}

pub fn line_chart(title: &str, xlabel: &str, ylabel: &str, series: &[Series], yrange: Option<(f64, f64)>) -> String {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let (x0, x1) =
        nice_range(all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min), all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max));
    let (y0, y1) = yrange.unwrap_or_else(|| {
        nice_range(all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min), all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max))
    });
    let sx = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let sy = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let mut s = open_chart(title);
    let _ = write!(s, "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{}\" stroke=\"#444\"/>", H - B, W - R, H - B, H - B);
    for i in 0..=4 {
        let yv = y0 + (y1 - y0) * i as f64 / 4.0;
        let y = sy(yv);
        let _ = write!(s, "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", W - R, L - 4.0, y + 4.0, fmt_tick(yv));
    }
    let xs = all.iter().map(|p| p.0);
    let integer = all.iter().all(|p| p.0.fract() == 0.0);
    for xv in nice_ticks(xs.clone().fold(f64::INFINITY, f64::min), xs.fold(f64::NEG_INFINITY, f64::max), integer) {
        let _ =
            write!(s, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" class=\"xtick\">{}</text>", sx(xv), H - B + 14.0, fmt_tick(xv));
    }
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>", (L + W - R) / 2.0, H - 8.0, esc(xlabel));
    let _ = write!(
        s,
        "<text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>",
        (T + H - B) / 2.0,
        (T + H - B) / 2.0,
        esc(ylabel)
    );
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = se.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.8\" points=\"{}\"><title>{}</title></polyline>",
            pts.join(" "),
            esc(&se.name)
        );
        for &(x, y) in &se.points {
            let _ = write!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{c}\"/>", sx(x), sy(y));
        }
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"3\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            W - R - 150.0,
            T + 4.0 + 13.0 * i as f64,
            W - R - 136.0,
            T + 8.0 + 13.0 * i as f64,
            esc(&se.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Category labels under a line chart whose x values are 0..n (replaces the numeric ticks).
pub fn x_labels(names: &[String]) -> String {
    let n = names.len().max(2) as f64;
    let mut s = format!("<rect x=\"40\" y=\"{}\" width=\"480\" height=\"16\" fill=\"white\"/>", H - B + 2.0);
    for (i, name) in names.iter().enumerate() {
        // matches line_chart's padded x range for points 0..n-1
        let (x0, x1) = (-0.05 * (n - 1.0), (n - 1.0) * 1.05);
        let x = L + (i as f64 - x0) / (x1 - x0) * (W - L - R);
        let _ = write!(s, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", H - B + 14.0, esc(name));
    }
    s.push_str("</svg>");
    s
}

fn fmt_tick(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

pub fn bar_chart(title: &str, names: &[String], values: &[f64]) -> String {
    let hmax = values.iter().cloned().fold(0.0, f64::max).max(1e-12);
    let bw = (W - L - R) / names.len().max(1) as f64;
    let mut s = open_chart(title);
    let _ = write!(s, "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>", H - B, W - R, H - B);
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        let bh = v / hmax * (H - T - B);
        let x = L + i as f64 * bw + bw * 0.15;
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{}: {v}</title></rect>",
            H - B - bh,
            bw * 0.7,
            COLORS[0],
            esc(n)
        );
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", x + bw * 0.35, H - B - bh - 3.0, fmt_tick(*v));
        let (lx, ly) = (x + bw * 0.35, H - B + 10.0);
        let _ = write!(s, "<text x=\"{lx:.1}\" y=\"{ly}\" text-anchor=\"end\" transform=\"rotate(-30 {lx:.1} {ly})\">{}</text>", esc(n));
    }
    s.push_str("</svg>");
    s
}

pub fn confusion(classes: &[String], m: &[Vec<usize>]) -> String {
    let k = m.len();
    let cell = (360.0 / k.max(1) as f64).clamp(14.0, 48.0);
    let (ox, oy) = (110.0, 40.0);
    let (w, h) = (ox + cell * k as f64 + 20.0, oy + cell * k as f64 + 30.0);
    let mut s = String::new();
    let _ = write!(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"confusion\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"10\"><rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"14\" text-anchor=\"middle\">predicted →</text><text x=\"10\" y=\"{}\">true ↓</text>",
        ox + cell * k as f64 / 2.0,
        oy - 4.0
    );
    for (i, row) in m.iter().enumerate() {
        let tot = row.iter().sum::<usize>().max(1) as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ox - 4.0,
            oy + cell * (i as f64 + 0.6),
            esc(classes.get(i).map(|c| c.as_str()).unwrap_or("?"))
        );
        for (j, &v) in row.iter().enumerate() {
            let f = v as f64 / tot;
            let shade = (255.0 - 200.0 * f) as u8;
            let _ = write!(
                s,
                "<rect class=\"cell\" data-count=\"{v}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"rgb({shade},{shade},255)\" stroke=\"#ccc\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v}</text>",
                ox + cell * j as f64,
                oy + cell * i as f64,
                ox + cell * (j as f64 + 0.5),
                oy + cell * (i as f64 + 0.6)
            );
        }
    }
    for (j, c) in classes.iter().enumerate().take(k) {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            ox + cell * (j as f64 + 0.5),
            oy + cell * k as f64 + 14.0,
            esc(c)
        );
    }
    s.push_str("</svg>");
    s
}

/// Scatter plot of `pts` over both axes' range [lo, hi] (points clamped into it), on the
/// identity line from (lo, lo) to (hi, hi), named `diag` (e.g. y = x).
pub fn scatter_chart(title: &str, xlabel: &str, ylabel: &str, pts: &Series, diag: &str, (lo, hi): (f64, f64)) -> String {
    let diag = Series { name: diag.into(), points: vec![(lo, lo), (hi, hi)] };
    // both axes span the same rounded range
    let (x0, x1) = nice_range(lo, hi);
    let (y0, y1) = (x0, x1);
    let mut s = line_chart(title, xlabel, ylabel, std::slice::from_ref(&diag), Some((x0, x1)));
    let sx = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let sy = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let mut dots = String::new();
    for &(x, y) in &pts.points {
        let _ = write!(
            dots,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\" fill=\"#d62728\" fill-opacity=\"0.35\"/>",
            sx(x.clamp(lo, hi)),
            sy(y.clamp(lo, hi))
        );
    }
    let _ = write!(dots, "<text x=\"{}\" y=\"{}\" fill=\"#d62728\">{}</text>", L + 8.0, T + 8.0, esc(&pts.name));
    s.truncate(s.len() - "</svg>".len());
    s.push_str(&dots);
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epochs 1..=30 get whole-number ticks at a round step; 1..=3 epochs get no tick between
    /// two epochs (the report once labelled 1.5 and 2.5); a 0..1 range gets tenths or fifths.
    #[test]
    fn ticks_are_round_and_whole_for_whole_values() {
        assert_eq!(nice_ticks(1.0, 30.0, true), vec![10.0, 20.0, 30.0]);
        assert_eq!(nice_ticks(0.0, 12.0, true), vec![0.0, 5.0, 10.0]);
        assert_eq!(nice_ticks(1.0, 3.0, true), vec![1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(0.0, 1.0, false), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.0, 0.3, false), vec![0.0, 0.1, 0.2, 0.3]);
        assert_eq!(nice_ticks(4.0, 4.0, true), vec![4.0]);
        assert!(nice_ticks(f64::NAN, 1.0, false).is_empty());
        let chart =
            line_chart("t", "epoch", "loss", &[Series { name: "a".into(), points: vec![(1.0, 0.5), (2.0, 0.4), (3.0, 0.3)] }], None);
        let ticks: Vec<&str> = chart.split("class=\"xtick\">").skip(1).map(|s| &s[..s.find('<').unwrap()]).collect();
        assert_eq!(ticks, ["1", "2", "3"]);
    }
}

//! The console's charts: inline SVG built here with integer arithmetic, so money never passes through a float.
//! The dashboard draws the daily inflow as bars; an organization's page draws its balance as a step line.

use time::macros::format_description;
use time::{Date, OffsetDateTime};

use super::format;

/// One bar of a bar chart, in the chart's own units.
#[derive(Debug, Clone)]
pub(super) struct Bar {
    /// Its left edge.
    pub(super) x: i64,
    /// Its top edge.
    pub(super) y: i64,
    /// Its width.
    pub(super) width: i64,
    /// Its height (at least 1 for an amount above zero, so it stays visible).
    pub(super) height: i64,
    /// Its tooltip: the day and the amount.
    pub(super) title: String,
}

/// A text on a chart's axis.
#[derive(Debug, Clone)]
pub(super) struct AxisLabel {
    /// Where it is anchored, across.
    pub(super) x: i64,
    /// Its baseline.
    pub(super) y: i64,
    /// What it says.
    pub(super) text: String,
    /// SVG's `text-anchor`: `start`, `middle` or `end`.
    pub(super) anchor: &'static str,
}

/// A horizontal guide line.
#[derive(Debug, Clone)]
pub(super) struct Guide {
    /// Its height on the chart.
    pub(super) y: i64,
    /// Where it starts.
    pub(super) x1: i64,
    /// Where it ends.
    pub(super) x2: i64,
}

/// An inline SVG chart: bars or a line (`points` of a polyline), labels and guides.
#[derive(Debug, Clone, Default)]
pub(super) struct Chart {
    /// The SVG's width.
    pub(super) width: i64,
    /// The SVG's height.
    pub(super) height: i64,
    /// What it shows, in words, for screen readers.
    pub(super) description: String,
    /// A bar chart's bars.
    pub(super) bars: Vec<Bar>,
    /// A line chart's polyline points, `x,y x,y …`.
    pub(super) points: String,
    /// The axes' texts.
    pub(super) labels: Vec<AxisLabel>,
    /// The horizontal guides.
    pub(super) guides: Vec<Guide>,
}

/// Room left of the plot for the amount labels.
const CHART_LEFT: i64 = 120;
/// Room above the plot.
const CHART_TOP: i64 = 12;
/// The plot's height.
const CHART_PLOT_HEIGHT: i64 = 200;
/// Room below the plot for the date labels.
const CHART_BOTTOM: i64 = 28;

/// The smallest of 1, 2, 5 × 10ⁿ roubles at or above `kopecks`, in kopecks (so axis labels are round).
fn round_ceiling(kopecks: i64) -> i64 {
    let kopecks = kopecks.max(1);
    let roubles = kopecks / 100 + i64::from(kopecks % 100 != 0);
    let mut scale: i64 = 1;
    loop {
        for step in [1i64, 2, 5] {
            let candidate = step.saturating_mul(scale);
            if candidate >= roubles {
                return candidate.saturating_mul(100);
            }
        }
        if scale > i64::MAX / 100 {
            return kopecks;
        }
        scale *= 10;
    }
}

/// `value` scaled from `0..=range` to `0..=span`, exactly in integers.
fn scale(value: i128, range: i128, span: i64) -> i64 {
    if range <= 0 {
        return 0;
    }
    i64::try_from(value.clamp(0, range) * i128::from(span) / range).unwrap_or(span)
}

/// The daily inflow as bars, with the amount axis rounded up and a few dates below.
pub(super) fn inflow_chart(days: &[(Date, i64)]) -> Chart {
    const SLOT: i64 = 20;
    const BAR: i64 = 14;
    let plot_width = SLOT * days.len() as i64;
    let top = round_ceiling(days.iter().map(|(_, amount)| *amount).max().unwrap_or(0));
    let baseline = CHART_TOP + CHART_PLOT_HEIGHT;
    let mut chart = Chart {
        width: CHART_LEFT + plot_width + 10,
        height: baseline + CHART_BOTTOM,
        description: format!("Bank inflow per day over the last {} days, up to {} a day", days.len(), format::rub(top)),
        ..Chart::default()
    };
    for (fraction, text) in [(0, format::rub(0)), (1, format::rub(top / 2)), (2, format::rub(top))] {
        let y = baseline - CHART_PLOT_HEIGHT * fraction / 2;
        chart.guides.push(Guide { y, x1: CHART_LEFT, x2: CHART_LEFT + plot_width });
        chart.labels.push(AxisLabel { x: CHART_LEFT - 6, y: y + 4, text, anchor: "end" });
    }
    let last = days.len().saturating_sub(1);
    for (index, (date, amount)) in days.iter().enumerate() {
        let height = match scale(i128::from(*amount), i128::from(top), CHART_PLOT_HEIGHT) {
            0 if *amount > 0 => 1,
            height => height,
        };
        let x = CHART_LEFT + SLOT * index as i64 + (SLOT - BAR) / 2;
        chart.bars.push(Bar {
            x,
            y: baseline - height,
            width: BAR,
            height,
            title: format!("{}: {}", short_date(*date), format::rub(*amount)),
        });
        if index % 7 == 0 && last - index >= 3 || index == last {
            chart.labels.push(AxisLabel {
                x: x + BAR / 2,
                y: baseline + 18,
                text: short_date(*date),
                anchor: "middle",
            });
        }
    }
    chart
}

/// `Mar 1`: a bar's day, short enough to fit under it.
fn short_date(date: Date) -> String {
    date.format(format_description!("[month repr:short] [day padding:none]")).unwrap_or_else(|_| date.to_string())
}

/// A balance over time as a step line: flat between changes, a vertical step at each change, up to `now`.
/// `changes` are `(when, before, after)`, oldest first.
pub(super) fn balance_chart(changes: &[(OffsetDateTime, i64, i64)], now: OffsetDateTime) -> Chart {
    const PLOT_WIDTH: i64 = 600;
    let baseline = CHART_TOP + CHART_PLOT_HEIGHT;
    let mut chart = Chart { width: CHART_LEFT + PLOT_WIDTH + 10, height: baseline + CHART_BOTTOM, ..Chart::default() };
    let Some(&(start, first_before, _)) = changes.first() else { return chart };
    let end = now.max(changes.last().map_or(start, |change| change.0));
    let low = changes.iter().map(|change| change.2).chain([first_before, 0]).min().unwrap_or(0);
    let high = changes.iter().map(|change| change.2).chain([first_before]).max().unwrap_or(0);
    let high = if high > 0 { round_ceiling(high) } else { high };
    let range = i128::from(high) - i128::from(low);
    let span = (end - start).whole_milliseconds();
    let x_of = |moment: OffsetDateTime| CHART_LEFT + scale((moment - start).whole_milliseconds(), span, PLOT_WIDTH);
    let y_of = |balance: i64| baseline - scale(i128::from(balance) - i128::from(low), range, CHART_PLOT_HEIGHT);
    let mut points = vec![(x_of(start), y_of(first_before))];
    for &(moment, before, after) in changes {
        points.push((x_of(moment), y_of(before)));
        points.push((x_of(moment), y_of(after)));
    }
    let last_balance = changes.last().map_or(first_before, |change| change.2);
    points.push((CHART_LEFT + PLOT_WIDTH, y_of(last_balance)));
    chart.points = points.iter().map(|(x, y)| format!("{x},{y}")).collect::<Vec<_>>().join(" ");
    for value in if low < 0 { vec![low, 0, high] } else { vec![low, high] } {
        let y = y_of(value);
        chart.guides.push(Guide { y, x1: CHART_LEFT, x2: CHART_LEFT + PLOT_WIDTH });
        chart.labels.push(AxisLabel { x: CHART_LEFT - 6, y: y + 4, text: format::rub(value), anchor: "end" });
    }
    // Within one day the dates would say nothing: the times do.
    let moment = |at: OffsetDateTime| if start.date() == end.date() { format::time(at) } else { format::date(at) };
    chart.labels.push(AxisLabel { x: CHART_LEFT, y: baseline + 18, text: moment(start), anchor: "start" });
    chart.labels.push(AxisLabel { x: CHART_LEFT + PLOT_WIDTH, y: baseline + 18, text: moment(end), anchor: "end" });
    chart.description = format!(
        "Balance from {} to {}: {} changes, between {} and {}, now {}",
        format::date(start),
        format::date(end),
        changes.len(),
        format::rub(changes.iter().map(|change| change.2).chain([first_before]).min().unwrap_or(0)),
        format::rub(changes.iter().map(|change| change.2).chain([first_before]).max().unwrap_or(0)),
        format::rub(last_balance),
    );
    chart
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(round_ceiling(0), 100);
        assert_eq!(round_ceiling(150), 200);
        assert_eq!(round_ceiling(123_456), 200_000);
        assert_eq!(round_ceiling(5_00000), 5_00000);
        assert_eq!(round_ceiling(5_00001), 10_00000);
        assert!(round_ceiling(i64::MAX) > 0);
    }

    #[test]
    fn bars_scale_exactly_and_small_amounts_stay_visible() {
        let day = time::macros::date!(2026 - 03 - 01);
        let chart = inflow_chart(&[(day, 0), (day, 1), (day, 10_0000), (day, 5_0000)]);
        let heights: Vec<i64> = chart.bars.iter().map(|bar| bar.height).collect();
        assert_eq!(heights, vec![0, 1, CHART_PLOT_HEIGHT, CHART_PLOT_HEIGHT / 2]);
        assert!(chart.bars.iter().all(|bar| bar.y + bar.height == CHART_TOP + CHART_PLOT_HEIGHT));
        assert!(chart.bars[2].title.contains("1,000.00 RUB"));
    }

    #[test]
    fn the_balance_line_steps_at_each_change() {
        let start = time::macros::datetime!(2026-03-01 00:00:00 UTC);
        let chart =
            balance_chart(&[(start, 0, 10_000), (start + Duration::days(1), 10_000, 5_000)], start + Duration::days(2));
        let points: Vec<&str> = chart.points.split(' ').collect();
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], format!("{CHART_LEFT},{}", CHART_TOP + CHART_PLOT_HEIGHT));
        assert!(points[5].starts_with(&format!("{},", CHART_LEFT + 600)));
        assert!(balance_chart(&[], start).points.is_empty());
    }
}

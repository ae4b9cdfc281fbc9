//! The week as a grid: 7 rows, Monday to Sunday, of 24 hours or 48 half hours, `#` asleep and
//! `.` awake, the way the week is drawn on paper (and the seed platform's 168-hour matrix).
//!
//! Text: one row per line, optionally led by its day name; blanks inside a row are ignored.
//! JSON: an array of 7 rows, each a string of `#` and `.`, or an array of booleans or 0/1
//! (true / 1 asleep).

use super::{text::at, Week, WindowError, DAY, DAYS};

/// Why a grid was refused, naming the row or cell.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    /// Not 7 rows.
    #[error("invalid grid: expected 7 rows (Mon..Sun), found {0}")]
    Rows(usize),
    /// A row of the wrong length, or rows of different lengths.
    #[error("invalid grid: row {row} ({day}) has {cells} cells, expected {expected}")]
    Cells {
        /// 1-based row.
        row: usize,
        /// Its day.
        day: &'static str,
        /// Cells found.
        cells: usize,
        /// Cells expected: 24 or 48, as the first row has.
        expected: String,
    },
    /// A cell that is neither asleep nor awake.
    #[error("invalid grid: row {row} ({day}) has {found:?}; use '#' for asleep and '.' for awake")]
    Cell {
        /// 1-based row.
        row: usize,
        /// Its day.
        day: &'static str,
        /// What was there.
        found: String,
    },
    /// A row led by the wrong day's name.
    #[error("invalid grid: row {row} is labelled {found:?}, expected {day} (rows run Mon..Sun)")]
    Label {
        /// 1-based row.
        row: usize,
        /// The day it should be.
        day: &'static str,
        /// The label found.
        found: String,
    },
    /// JSON that is not an array of rows.
    #[error("invalid grid JSON: {0}")]
    Json(String),
    /// A week whose edges are not on the hour or half hour cannot be drawn as a grid.
    #[error("the window changes at {0}, which a grid of hours or half hours cannot show")]
    Resolution(String),
}

/// One row's cells as asleep flags.
fn row_cells(row: usize, text: &str) -> Result<Vec<bool>, GridError> {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '#' => Ok(true),
            '.' => Ok(false),
            other => Err(GridError::Cell {
                row: row + 1,
                day: DAYS[row],
                found: other.to_string(),
            }),
        })
        .collect()
}

fn json_rows(input: &str) -> Result<Vec<Vec<bool>>, GridError> {
    let value: serde_json::Value =
        serde_json::from_str(input).map_err(|e| GridError::Json(e.to_string()))?;
    let rows = value
        .as_array()
        .ok_or_else(|| GridError::Json("expected an array of 7 rows".into()))?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| match row {
            serde_json::Value::String(s) => row_cells(i.min(6), s),
            serde_json::Value::Array(cells) => cells
                .iter()
                .map(|c| match c {
                    serde_json::Value::Bool(b) => Ok(*b),
                    serde_json::Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
                    serde_json::Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
                    other => Err(GridError::Cell {
                        row: i + 1,
                        day: DAYS[i.min(6)],
                        found: other.to_string(),
                    }),
                })
                .collect(),
            other => Err(GridError::Json(format!(
                "row {} is {other}, expected a string or an array",
                i + 1
            ))),
        })
        .collect()
}

fn text_rows(input: &str) -> Result<Vec<Vec<bool>>, GridError> {
    let lines: Vec<&str> = input
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let cells = match line.find(['#', '.']) {
                Some(0) => *line,
                Some(at) => {
                    let label = line[..at].trim();
                    if i < 7 && !label.eq_ignore_ascii_case(DAYS[i]) {
                        return Err(GridError::Label {
                            row: i + 1,
                            day: DAYS[i],
                            found: label.to_string(),
                        });
                    }
                    &line[at..]
                }
                None => line,
            };
            row_cells(i.min(6), cells)
        })
        .collect()
}

impl Week {
    /// Parses a grid as text or JSON (module docs).
    pub fn parse_grid(input: &str) -> Result<Week, WindowError> {
        let rows = if input.trim_start().starts_with('[') {
            json_rows(input)?
        } else {
            text_rows(input)?
        };
        if rows.len() != 7 {
            return Err(GridError::Rows(rows.len()).into());
        }
        let width = rows[0].len();
        for (i, row) in rows.iter().enumerate() {
            let ok = if i == 0 {
                width == 24 || width == 48
            } else {
                row.len() == width
            };
            if !ok {
                return Err(GridError::Cells {
                    row: i + 1,
                    day: DAYS[i],
                    cells: row.len(),
                    expected: if i == 0 || !(width == 24 || width == 48) {
                        "24 or 48".to_string()
                    } else {
                        width.to_string()
                    },
                }
                .into());
            }
        }
        let cell = DAY / width;
        Week::from_minutes(
            rows.iter()
                .flat_map(|row| row.iter().flat_map(|a| std::iter::repeat_n(*a, cell)))
                .collect(),
        )
    }

    /// The grid's cell width in minutes: 60 when every edge is on the hour, 30 when on the
    /// half hour; an edge elsewhere cannot be drawn.
    pub fn grid_cell_minutes(&self) -> Result<usize, GridError> {
        let edges = self.edges();
        if edges.iter().all(|e| e.minute % 60 == 0) {
            Ok(60)
        } else if let Some(e) = edges.iter().find(|e| e.minute % 30 != 0) {
            Err(GridError::Resolution(at(e.minute)))
        } else {
            Ok(30)
        }
    }

    /// The grid rows, `#` asleep and `.` awake, without day labels.
    pub fn grid_rows(&self) -> Result<Vec<String>, GridError> {
        let cell = self.grid_cell_minutes()?;
        Ok((0..7)
            .map(|d| {
                (0..DAY / cell)
                    .map(|c| {
                        if self.asleep(d * DAY + c * cell) {
                            '#'
                        } else {
                            '.'
                        }
                    })
                    .collect()
            })
            .collect())
    }

    /// The grid as text, each row led by its day name; [`Week::parse_grid`] reads it back.
    pub fn to_grid(&self) -> Result<String, GridError> {
        Ok(self
            .grid_rows()?
            .iter()
            .zip(DAYS)
            .map(|(row, day)| format!("{day} {row}\n"))
            .collect())
    }
}

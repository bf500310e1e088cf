//! Saved dashboard layouts (SPEC.md §18.7): each admin, of either role,
//! keeps one arrangement of panels — which panels, in which order, how
//! wide and how high — stored on the server so it follows them to any
//! browser. A layout is the admin's own view, not a setting: a viewer
//! saves theirs too. Saving is audited (`layout`).
//!
//! The server checks the shape, not the panel names: the dashboard owns
//! what a panel id means, and ignores ids it does not know. Stored as
//! text, one line per panel: `id width height`.
//!
//! Not owned here: the table (storage/admin.rs), what panels exist
//! (`web/dashboard`).

use std::collections::HashSet;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};

use super::api::{Api, audit_change, reader};
use super::error::AdminError;

/// Most panels in one layout.
pub const MAX_PANELS: usize = 32;
/// Longest panel id.
pub const MAX_PANEL_ID: usize = 64;
/// Widest panel, in grid columns.
pub const MAX_WIDTH: u8 = 3;
/// Highest panel, in grid rows.
pub const MAX_HEIGHT: u8 = 2;

/// One panel of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelPlace {
    /// Which panel (`chart:messages`, `table:audit`, …): 1–64 of
    /// `[a-z0-9:_-]`, unique within a layout.
    pub id: String,
    /// Grid columns it spans, 1–3.
    pub width: u8,
    /// Grid rows it spans, 1–2.
    pub height: u8,
}

/// An admin's layout: the panels in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Panels, first shown first.
    pub panels: Vec<PanelPlace>,
}

/// Why a layout was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// More than [`MAX_PANELS`] panels.
    #[error("a layout holds at most {MAX_PANELS} panels")]
    TooManyPanels,
    /// An id that is empty, too long or has other characters.
    #[error("panel ids are 1-{MAX_PANEL_ID} of a-z 0-9 : _ -")]
    BadId,
    /// The same id twice.
    #[error("panel {0} appears twice")]
    Duplicate(String),
    /// Width or height out of range.
    #[error("panel {0}: width must be 1-{MAX_WIDTH} and height 1-{MAX_HEIGHT}")]
    BadSize(String),
}

impl Layout {
    /// The stored form: one line per panel, `id width height`, in order
    /// (ids have no spaces or line breaks).
    pub fn to_stored(&self) -> String {
        self.panels
            .iter()
            .map(|p| format!("{} {} {}\n", p.id, p.width, p.height))
            .collect()
    }

    /// Reads the stored form; `None` when it does not parse or check.
    pub fn from_stored(text: &str) -> Option<Layout> {
        let panels = text
            .lines()
            .map(|line| {
                let mut parts = line.split(' ');
                let place = PanelPlace {
                    id: parts.next()?.to_owned(),
                    width: parts.next()?.parse().ok()?,
                    height: parts.next()?.parse().ok()?,
                };
                parts.next().is_none().then_some(place)
            })
            .collect::<Option<Vec<_>>>()?;
        let layout = Layout { panels };
        layout.check().is_ok().then_some(layout)
    }

    /// Checks the shape.
    ///
    /// # Errors
    /// [`LayoutError`].
    pub fn check(&self) -> Result<(), LayoutError> {
        if self.panels.len() > MAX_PANELS {
            return Err(LayoutError::TooManyPanels);
        }
        let mut seen = HashSet::new();
        for panel in &self.panels {
            let id = &panel.id;
            if id.is_empty()
                || id.len() > MAX_PANEL_ID
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-".contains(&b))
            {
                return Err(LayoutError::BadId);
            }
            if !(1..=MAX_WIDTH).contains(&panel.width) || !(1..=MAX_HEIGHT).contains(&panel.height)
            {
                return Err(LayoutError::BadSize(id.clone()));
            }
            if !seen.insert(id.as_str()) {
                return Err(LayoutError::Duplicate(id.clone()));
            }
        }
        Ok(())
    }
}

/// `GET /admin/api/layout`'s answer.
#[derive(Debug, Serialize)]
pub(super) struct SavedLayout {
    /// The saved layout, or `null`: none saved (the dashboard's default).
    layout: Option<Layout>,
}

/// `GET /admin/api/layout`: the session's admin's saved layout.
pub(super) async fn get_layout(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<axum::Json<SavedLayout>, AdminError> {
    let who = reader(&api, &headers).await?;
    let text = api.state.storage.admin_layout(who.admin_id).await?;
    // A stored layout this build cannot read (written by another version) reads as none.
    let layout = text.and_then(|t| Layout::from_stored(&t));
    Ok(axum::Json(SavedLayout { layout }))
}

/// `PUT /admin/api/layout`: saves the session's admin's layout (any role;
/// CSRF header required; audited).
pub(super) async fn put_layout(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    body: Result<axum::Json<Layout>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<Layout>, AdminError> {
    let who = reader(&api, &headers).await?;
    super::api::check_csrf(&method, &headers)?;
    let axum::Json(layout) = body.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    layout
        .check()
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let text = layout.to_stored();
    api.state
        .storage
        .set_admin_layout(who.admin_id, &text, api.state.now_ms())
        .await?;
    let detail = format!(
        "saved a layout of {} panels: {}",
        layout.panels.len(),
        layout
            .panels
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    audit_change(&api, &who, "layout", detail).await?;
    Ok(axum::Json(layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(id: &str, width: u8, height: u8) -> PanelPlace {
        PanelPlace {
            id: id.to_owned(),
            width,
            height,
        }
    }

    #[test]
    fn layouts_are_checked_for_shape() {
        let good = Layout {
            panels: vec![place("chart:messages", 2, 2), place("table:audit", 1, 1)],
        };
        assert_eq!(good.check(), Ok(()));
        assert_eq!(Layout { panels: vec![] }.check(), Ok(()));
        let dup = Layout {
            panels: vec![place("a", 1, 1), place("a", 2, 1)],
        };
        assert_eq!(dup.check(), Err(LayoutError::Duplicate("a".into())));
        for bad in ["", "Chart", "a b", "<script>", &"x".repeat(65)] {
            let l = Layout {
                panels: vec![place(bad, 1, 1)],
            };
            assert_eq!(l.check(), Err(LayoutError::BadId), "{bad:?}");
        }
        for (w, h) in [(0, 1), (4, 1), (1, 0), (1, 3)] {
            let l = Layout {
                panels: vec![place("a", w, h)],
            };
            assert_eq!(l.check(), Err(LayoutError::BadSize("a".into())));
        }
        let many = Layout {
            panels: (0..=MAX_PANELS)
                .map(|i| place(&format!("p{i}"), 1, 1))
                .collect(),
        };
        assert_eq!(many.check(), Err(LayoutError::TooManyPanels));
    }

    #[test]
    fn the_stored_form_round_trips_and_bad_text_reads_as_none() {
        let layout = Layout {
            panels: vec![place("chart:messages", 2, 2), place("table:audit", 1, 1)],
        };
        let text = layout.to_stored();
        assert_eq!(text, "chart:messages 2 2\ntable:audit 1 1\n");
        assert_eq!(Layout::from_stored(&text), Some(layout));
        assert_eq!(Layout::from_stored(""), Some(Layout { panels: vec![] }));
        for bad in ["a 1", "a 1 1 1", "a x 1", "a 9 1", "a 1 1\na 1 1", "A 1 1"] {
            assert_eq!(Layout::from_stored(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Layout>(r#"{"panels":[],"x":1}"#).is_err());
        assert!(
            serde_json::from_str::<Layout>(r#"{"panels":[{"id":"a","width":1,"height":1,"z":2}]}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<Layout>(r#"{"panels":[{"id":"a","width":300,"height":1}]}"#)
                .is_err()
        );
    }
}

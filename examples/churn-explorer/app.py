"""A Streamlit page exploring customer churn by segment."""

import streamlit as st

from conveyor import config

CHURN = {"small business": 0.061, "mid-market": 0.034, "enterprise": 0.012}

st.title("Churn explorer")
st.caption(f"environment: {config.active_name()}")
segment = st.selectbox("Segment", list(CHURN))
st.metric("Monthly churn", f"{CHURN[segment]:.1%}")

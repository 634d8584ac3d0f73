"""Demo data shipped with lelp-studio (installed as ``lelp_studio.sample_data``)."""

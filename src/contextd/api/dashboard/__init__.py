"""The analysts' dashboard: server-rendered HTML with inline SVG plots, no JavaScript and
no CDN; its stylesheet is served by the app."""

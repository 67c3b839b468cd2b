// Entry for pages without their own script: the shared stylesheet.
import "./style.css";

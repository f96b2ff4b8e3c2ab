import { render } from "preact";
import { App } from "./ui/App";
import { MailApp } from "./state";
import "./style.css";

const app = new MailApp();
// For the end-to-end tests and the console: the one application object.
(window as unknown as { tidings: MailApp }).tidings = app;
const root = document.getElementById("app");
if (root) render(<App app={app} />, root);
void app.start();

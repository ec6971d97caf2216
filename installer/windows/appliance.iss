; Inno Setup 6 script of the appliance's Windows installer: a per-user install, no administrator rights needed.
;
;   python installer\build.py --setup          (builds dist\appliance\ with PyInstaller, then runs ISCC on this file)
;   iscc /DAppVersion=0.1.0 /DBundleDir=C:\src\appliance\dist\appliance /DOutputDir=C:\src\appliance\dist installer\windows\appliance.iss
;
; Installs the PyInstaller bundle into %LOCALAPPDATA%\Programs\appliance, adds a Start menu shortcut, offers
; "Start appliance when I log in" (the HKCU Run value "appliance": the same value the tray's "Start at login"
; toggle writes and reads), and registers an uninstaller that stops the app and removes that value, whoever
; wrote it. The user's settings, models and logs (%LOCALAPPDATA%\appliance) are left alone.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\appliance"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"
#define StartupApprovedKey "Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"

[Setup]
AppId={{6F0C5F0E-4C36-4B8E-9E55-4A5C0B7E2D31}
AppName=appliance
AppVersion={#AppVersion}
AppVerName=appliance {#AppVersion}
AppPublisher=appliance
AppComments=Serve TensorFlow models on this computer over a local REST API
DefaultDirName={localappdata}\Programs\appliance
DefaultGroupName=appliance
DisableProgramGroupPage=yes
DisableDirPage=auto
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=appliance-{#AppVersion}-setup
#ifdef SetupIcon
SetupIconFile={#SetupIcon}
#endif
UninstallDisplayIcon={app}\appliance.exe
UninstallDisplayName=appliance
; ~1.2 GB of files: lzma2 solid compression takes a few minutes but makes the download much smaller.
Compression=lzma2
SolidCompression=yes
LZMANumBlockThreads=4
WizardStyle=modern
CloseApplications=yes
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "startatlogin"; Description: "Start appliance when I log in"; GroupDescription: "Options:"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\appliance"; Filename: "{app}\appliance.exe"; Comment: "Serve TensorFlow models over a local REST API"
Name: "{group}\Uninstall appliance"; Filename: "{uninstallexe}"

[Registry]
; The same value as appliance.autostart.WindowsRunKey writes (name "appliance", the path quoted only when it has
; a space, as subprocess.list2cmdline does): the app's own toggle shows it as on and can switch it off.
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "appliance"; ValueData: "{code:RunCommand}"; Tasks: startatlogin; Flags: uninsdeletevalue

[Run]
Filename: "{app}\appliance.exe"; Description: "Start appliance now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop this user's running appliance so that its files can be removed.
Filename: "{sys}\taskkill.exe"; Parameters: "/IM appliance.exe /F"; Flags: runhidden; RunOnceId: "StopAppliance"

[Code]
function RunCommand(Param: String): String;
begin
  Result := AddQuotes(ExpandConstant('{app}\appliance.exe'));
end;

// The tray's "Start at login" may have written the Run value after installation (or Task Manager's
// StartupApproved flag): remove both whoever wrote them, so that nothing starts a removed program at login.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usUninstall then
  begin
    RegDeleteValue(HKEY_CURRENT_USER, '{#RunKey}', 'appliance');
    RegDeleteValue(HKEY_CURRENT_USER, '{#StartupApprovedKey}', 'appliance');
  end;
end;
